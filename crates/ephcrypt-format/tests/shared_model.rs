//! Randomized multi-handle models of shared files (from an attacker review),
//! aimed at the kept block and the trailer skipping of FORMAT.md §8.1.
//!
//! Family A (`deaths_*`): WAL-like handles (shared, write ahead, fixed
//! length), files of up to 4 groups (more groups than the 2 shared slots),
//! accesses concentrated on group boundaries, partial reads and writes that
//! straddle blocks and groups, writers that die (optionally tearing a
//! write), long-lived readers using `read_at` and `read_at_mut`.
//!
//! Family B (`setlen_*`): shared handles of a file-set member (no deaths),
//! where any handle truncates, extends, cuts and regrows to the same size,
//! or appends; long-lived readers, fixed-length readers among them. Exact
//! oracle: every read returns the current bytes; a fixed-length reader may
//! fail (never return other bytes) only while the file's length differs
//! from the one it holds.

use ephcrypt_format::{
    data_offset, FormatError, Mode, NonceSequence, SealedFile, VecIo, BLOCK_SIZE,
};

mod dying;
use dying::{create_sealed, key, name, Allowed, Death, DyingIo, PagePool, Rng, EPOCH};

const B: usize = BLOCK_SIZE;
const BU: u64 = B as u64;

fn content(rng: &mut Rng, n: usize) -> Vec<u8> {
    let s = rng.next() | 1;
    (0..n)
        .map(|i| (s.wrapping_mul(i as u64 + 1) >> 17) as u8)
        .collect()
}

/// A block index near a group boundary or the end, else anywhere.
fn pick_block(rng: &mut Rng, nblk: u64) -> u64 {
    let hot = [
        0u64, 1, 2, 254, 255, 256, 257, 510, 511, 512, 513, 767, 768, 769,
    ];
    if rng.chance(25) {
        return nblk - 1 - rng.below(3.min(nblk));
    }
    if rng.chance(70) {
        let c: Vec<u64> = hot.iter().copied().filter(|&b| b < nblk).collect();
        return c[rng.below(c.len() as u64) as usize];
    }
    rng.below(nblk)
}

struct Proc {
    f: SealedFile,
    nonces: NonceSequence,
    /// Reads with `read_at_mut` (else `read_at`).
    mut_reads: bool,
    /// Fixed length, and the length it was opened at.
    fixed: Option<u64>,
    /// Change counter (FORMAT.md §8.2) when this handle's last call
    /// returned successfully; `None` after a failure or before a call.
    seen: Option<u64>,
}

fn open_proc(
    io: &mut DyingIo,
    prefix: u64,
    wa: bool,
    fixed: bool,
    mut_reads: bool,
    len_now: u64,
) -> Result<Proc, FormatError> {
    let mut f = SealedFile::open(io, &key(), &EPOCH, &name(), Mode::Shared, None)?;
    f.set_write_ahead(wa);
    f.set_fixed_len(fixed);
    Ok(Proc {
        f,
        nonces: NonceSequence::new(prefix.to_le_bytes()),
        mut_reads,
        fixed: fixed.then_some(len_now),
        seen: None,
    })
}

/// The change counter of FORMAT.md §8.2, as the shims keep it: every write
/// or truncate bumps it; a handle whose last call succeeded and that finds it
/// unchanged since may claim so before its next call (`claims` of 100).
struct Counter {
    stamp: u64,
    claims: u64,
    /// Control: writes do not bump (a writer outside the shims).
    misses_writes: bool,
}

impl Counter {
    fn before(&self, p: &mut Proc, rng: &mut Rng) {
        if self.claims > 0 && p.seen == Some(self.stamp) && rng.chance(self.claims) {
            p.f.assume_unchanged();
        }
    }

    fn after<T, E>(&mut self, p: &mut Proc, wrote: bool, r: &Result<T, E>) {
        if wrote && !self.misses_writes {
            // Before the first physical write and after the last.
            self.stamp += 2;
        }
        p.seen = r.is_ok().then_some(self.stamp);
    }
}

fn read_with(
    p: &mut Proc,
    io: &mut DyingIo,
    out: &mut [u8],
    off: u64,
) -> Result<usize, FormatError> {
    if p.mut_reads {
        p.f.read_at_mut(io, &mut p.nonces, out, off)
    } else {
        p.f.read_at(io, out, off)
    }
}

// ---------------------------------------------------------------- family A

#[allow(clippy::too_many_lines)]
fn run_deaths(
    seed: u64,
    steps: usize,
    nblk: u64,
    last_len: usize,
    tear: bool,
    claims: u64,
) -> Result<usize, String> {
    run_deaths_counted(seed, steps, nblk, last_len, tear, claims, false, false)
}

/// `misses_closing`: control, a stalled write's data lands without the bump
/// after it.
#[allow(clippy::too_many_lines, clippy::too_many_arguments)] // one knob per model variant
fn run_deaths_counted(
    seed: u64,
    steps: usize,
    nblk: u64,
    last_len: usize,
    tear: bool,
    claims: u64,
    misses_closing: bool,
    pooled: bool,
) -> Result<usize, String> {
    let mut rng = Rng(seed | 1);
    // A writer that dies bumps only before its write; a stalled one bumps
    // again when its data lands (its call ends then).
    let mut counter = Counter {
        stamp: 0,
        claims,
        misses_writes: misses_closing,
    };
    let blen = |i: u64| if i == nblk - 1 { last_len } else { B };
    let len = (nblk - 1) * BU + last_len as u64;
    let mut io = DyingIo::new(VecIo::default());
    let mut model: Vec<Allowed> = Vec::new();
    let mut all = Vec::new();
    for i in 0..nblk {
        let c = content(&mut rng, blen(i));
        all.extend_from_slice(&c);
        model.push(Allowed::exact(c));
    }
    create_sealed(&mut io, &all);
    drop(all);
    if pooled {
        // WAL pages in the pool of FORMAT.md §8.3: room for 0 to 5 pages
        // (published and written-through pages mix), drained now and then.
        io.pool = Some(PagePool::with_room(rng.below(6) as usize));
    }
    let mut prefix = 100u64;
    let nw = 2usize;
    let mut procs: Vec<Proc> = Vec::new();
    for w in 0..nw {
        prefix += 1;
        procs.push(open_proc(&mut io, prefix, true, true, w == 0, len).unwrap());
    }
    let mut readers: Vec<Proc> = Vec::new();
    for r in 0..3 {
        prefix += 1;
        readers.push(open_proc(&mut io, prefix, true, true, r == 1, len).unwrap());
    }
    let mut trace: Vec<String> = Vec::new();
    let mut deaths = 0;
    // Groups whose metadata page a death tore (FORMAT.md §14: lost).
    let mut lost: Vec<u64> = Vec::new();
    // A writer stopped between its write ahead and its data write (the
    // block and its new version), until the data lands; no other write
    // meanwhile (WALWriteLock).
    let mut stalled: Option<(u64, Vec<u8>)> = None;
    for step in 0..steps {
        let op = rng.below(100);
        if pooled && stalled.is_none() && rng.chance(4) {
            // A writer closes its segment: what is published goes to disk.
            let p = &mut procs[rng.below(nw as u64) as usize];
            io.drain(p.f.cipher(), &mut p.nonces);
            counter.stamp += 2;
            trace.push(format!("step {step}: drain"));
            continue;
        }
        if let Some((b, nb)) = stalled.take() {
            if rng.chance(30) {
                io.land();
                trace.push(format!("step {step}: stalled data of block {b} lands"));
                model[b as usize] = Allowed::exact(nb);
                // The bump after the stalled write (its call ends now; the
                // model lets that handle make other calls meanwhile, so it
                // keeps no claim of its own).
                if !counter.misses_writes {
                    counter.stamp += 1;
                }
            } else {
                stalled = Some((b, nb));
            }
        }
        if op < 40 && stalled.is_none() {
            let w = rng.below(nw as u64) as usize;
            let first = pick_block(&mut rng, nblk);
            let count = if rng.chance(60) { 1 } else { 1 + rng.below(3) };
            let lastb = (first + count - 1).min(nblk - 1);
            if lost.contains(&(first / 256)) || lost.contains(&(lastb / 256)) {
                continue;
            }
            let mut start = first * BU;
            let mut end = lastb * BU + blen(lastb) as u64;
            let exact = |m: &Allowed| m.versions.len() == 1 && !m.eio;
            if rng.chance(50) && exact(&model[first as usize]) {
                start += rng.below(blen(first) as u64);
            }
            if rng.chance(40) && exact(&model[lastb as usize]) {
                let cand = lastb * BU + blen(lastb) as u64 - rng.below(blen(lastb) as u64);
                if cand > start {
                    end = cand;
                }
            }
            let data = content(&mut rng, (end - start) as usize);
            let mut news = Vec::new();
            for i in first..=lastb {
                let bs = i * BU;
                let be = bs + blen(i) as u64;
                let s = start.max(bs);
                let e = end.min(be);
                let mut nb = if s == bs && e == be {
                    vec![0; blen(i)]
                } else {
                    model[i as usize].versions[0].clone()
                };
                nb[(s - bs) as usize..(e - bs) as usize]
                    .copy_from_slice(&data[(s - start) as usize..(e - start) as usize]);
                news.push((i, nb));
            }
            let die = rng.chance(30);
            // Only a one-block write can stop between its last two writes
            // (a real pwrite that returned has landed).
            let stall = !die && first == lastb && rng.chance(25);
            io.defer_next_data = stall;
            let die_at = rng.below(2 + 2 * (lastb - first + 1)) as usize;
            io.writes = 0;
            io.torn = None;
            io.dies_at = die.then_some(die_at);
            io.death = if tear && rng.chance(50) {
                Death::Torn
            } else {
                Death::Before
            };
            let p = &mut procs[w];
            counter.before(p, &mut rng);
            let r = p.f.write_at(&mut io, &mut p.nonces, &data, start);
            let died = die && io.writes > die_at;
            io.dies_at = None;
            let stalled_now = r.is_ok() && io.deferred.is_some();
            if misses_closing && !died && !stalled_now {
                // (The control misses only the bump when stalled data lands.)
                counter.stamp += 2;
                p.seen = r.is_ok().then_some(counter.stamp);
            } else if died || stalled_now {
                // The bump before the write only: the writer never got to
                // (or has not yet reached) the one after it.
                counter.stamp += 1;
                p.seen = None;
            } else {
                counter.after(p, true, &r);
            }
            trace.push(format!(
                "step {step}: w{w} write [{start},{end}) blocks {first}..={lastb} died={died} {:?} torn={:?} -> {:?}",
                io.death, io.torn, r.as_ref().map(|_| ())
            ));
            match r {
                Ok(_) if died => return Err(format!("Ok though died\n{}", trace.join("\n"))),
                Ok(_) => {
                    io.defer_next_data = false;
                    let deferred = io.deferred.as_ref().map(|(off, _)| *off);
                    for (i, nb) in news {
                        if deferred == Some(data_offset(i)) {
                            let m = &mut model[i as usize];
                            if !m.versions.contains(&nb) {
                                m.versions.push(nb.clone());
                            }
                            stalled = Some((i, nb));
                        } else {
                            model[i as usize] = Allowed::exact(nb);
                        }
                    }
                    if stall {
                        trace.push(format!(
                            "step {step}: stalled: {:?}",
                            stalled.as_ref().map(|s| s.0)
                        ));
                    }
                }
                Err(e) if !died => {
                    return Err(format!(
                        "write failed without death: {e:?}\n{}",
                        trace.join("\n")
                    ))
                }
                Err(_) => {
                    deaths += 1;
                    for (i, nb) in news {
                        let m = &mut model[i as usize];
                        if !m.versions.contains(&nb) {
                            m.versions.push(nb);
                        }
                        if io
                            .torn
                            .is_some_and(|(meta, off)| !meta && off == data_offset(i))
                        {
                            m.eio = true;
                        }
                    }
                    if io.torn.is_some_and(|(meta, _)| meta) {
                        let g = io.torn.unwrap().1 / ephcrypt_format::meta_offset(1);
                        lost.push(g);
                        for i in 0..nblk {
                            if i / 256 == g {
                                model[i as usize].eio = true;
                            }
                        }
                    }
                    prefix += 1;
                    procs[w] = match open_proc(&mut io, prefix, true, true, w == 0, len) {
                        Ok(p) => p,
                        Err(_) if lost.contains(&0) || lost.contains(&((nblk - 1) / 256)) => {
                            return Ok(deaths)
                        }
                        Err(e) => return Err(format!("reopen failed {e:?}\n{}", trace.join("\n"))),
                    };
                }
            }
        } else {
            // A read of [off, off + n), possibly straddling blocks.
            let who = rng.below(1 + nw as u64 + 3);
            let i = pick_block(&mut rng, nblk);
            let skip = if rng.chance(60) {
                rng.below(blen(i) as u64)
            } else {
                0
            };
            let off = i * BU + skip;
            let n = if rng.chance(30) {
                1 + rng.below(2 * BU)
            } else {
                blen(i) as u64 - skip
            };
            let n = n.min(len - off) as usize;
            let mut out = vec![0u8; n];
            let r = match who {
                0 => {
                    prefix += 1;
                    open_proc(&mut io, prefix, true, true, rng.chance(50), len)
                        .and_then(|mut p| read_with(&mut p, &mut io, &mut out, off))
                }
                w if (w as usize) <= nw => {
                    let p = &mut procs[w as usize - 1];
                    counter.before(p, &mut rng);
                    let r = read_with(p, &mut io, &mut out, off);
                    counter.after(p, false, &r);
                    r
                }
                r => {
                    let p = &mut readers[r as usize - 1 - nw];
                    counter.before(p, &mut rng);
                    let r = read_with(p, &mut io, &mut out, off);
                    counter.after(p, false, &r);
                    r
                }
            };
            trace.push(format!(
                "step {step}: read by {who} [{off},+{n}) -> {:?}",
                r.as_ref().map_err(|e| format!("{e:?}"))
            ));
            let first = off / BU;
            let lastb = (off + n as u64 - 1) / BU;
            match r {
                Ok(got) if got != n => {
                    return Err(format!("short read {got}\n{}", trace.join("\n")))
                }
                Ok(_) => {
                    for b in first..=lastb {
                        let bs = b * BU;
                        let s = off.max(bs);
                        let e = (off + n as u64).min(bs + blen(b) as u64);
                        let piece = &out[(s - off) as usize..(e - off) as usize];
                        let m = &mut model[b as usize];
                        let matching: Vec<Vec<u8>> = m
                            .versions
                            .iter()
                            .filter(|v| &v[(s - bs) as usize..(e - bs) as usize] == piece)
                            .cloned()
                            .collect();
                        if matching.is_empty() {
                            return Err(format!(
                                "WRONG DATA at block {b} ({} versions)\n{}",
                                m.versions.len(),
                                trace.join("\n")
                            ));
                        }
                        if stalled.as_ref().is_some_and(|(sb, _)| *sb == b) {
                            // Old or new until it lands.
                        } else if matching.len() == 1 {
                            *m = Allowed::exact(matching[0].clone());
                        } else {
                            m.versions = matching;
                        }
                        // A lost group stays lost for readers without a
                        // copy of its page (the documented torn-page limit).
                        if lost.contains(&(b / 256)) {
                            m.eio = true;
                        }
                    }
                }
                Err(e) => {
                    let ok = (first..=lastb).any(|b| model[b as usize].eio);
                    if !ok {
                        return Err(format!("spurious error {e:?}\n{}", trace.join("\n")));
                    }
                }
            }
        }
    }
    if let Some(p) = io.pool.as_ref().filter(|p| p.room > 0) {
        // The pool was in play, not bypassed.
        if p.published == 0 || p.served == 0 {
            return Err(format!(
                "pool unused: {} published, {} served",
                p.published, p.served
            ));
        }
    }
    Ok(deaths)
}

fn seeds(default: u64) -> u64 {
    std::env::var("SHARED_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn deaths_pooled(
    seed: u64,
    steps: usize,
    nblk: u64,
    last_len: usize,
    claims: u64,
) -> Result<usize, String> {
    run_deaths_counted(seed, steps, nblk, last_len, true, claims, false, true)
}

#[test]
fn deaths_four_groups_with_page_pool() {
    let mut deaths = 0;
    for seed in 1..=seeds(40) {
        deaths += deaths_pooled(seed * 7919, 400, 4 * 256 + 2, 3000, 0)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(deaths > 0);
}

#[test]
fn deaths_small_file_with_page_pool_and_change_counter() {
    let mut deaths = 0;
    for seed in 1..=seeds(200) {
        deaths += deaths_pooled(seed * 104_729, 300, 6, 5000, 90)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(deaths > 0);
}

#[test]
fn deaths_four_groups() {
    let mut d = 0;
    for seed in 1..=seeds(20) {
        d += run_deaths(seed * 7919, 150, 3 * 256 + 5, B, false, 0)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(d > 0);
}

#[test]
fn deaths_four_groups_short_tail_and_tears() {
    for seed in 1..=seeds(20) {
        run_deaths(seed * 104_729, 150, 3 * 256 + 2, 3000, true, 0)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn deaths_small_file_many_steps() {
    for seed in 1..=seeds(60) {
        run_deaths(seed * 65_537, 300, 6, 5000, true, 0)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn deaths_four_groups_with_change_counter() {
    let mut d = 0;
    for seed in 1..=seeds(20) {
        d += run_deaths(seed * 7927, 150, 3 * 256 + 5, B, false, 90)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(d > 0);
}

#[test]
fn deaths_small_file_many_steps_with_change_counter() {
    for seed in 1..=seeds(60) {
        run_deaths(seed * 65_539, 300, 6, 5000, true, 90)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

// ---------------------------------------------------------------- family B

#[allow(clippy::too_many_lines)]
fn run_setlen(
    seed: u64,
    steps: usize,
    max_blocks: u64,
    wa: bool,
    claims: u64,
) -> Result<(), String> {
    run_setlen_counted(seed, steps, max_blocks, wa, claims, false, None)
}

/// The page pool of FORMAT.md §8.3 in family B: `room` pages (0 to 3, so
/// that published and written-through pages mix), drained now and then;
/// `hidden`: control, readers never find a published page.
#[derive(Clone, Copy)]
struct PoolPlan {
    hidden: bool,
}

#[allow(clippy::too_many_lines)]
fn run_setlen_counted(
    seed: u64,
    steps: usize,
    max_blocks: u64,
    wa: bool,
    claims: u64,
    misses_writes: bool,
    pool: Option<PoolPlan>,
) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let mut counter = Counter {
        stamp: 0,
        claims,
        misses_writes,
    };
    let mut io = DyingIo::new(VecIo::default());
    let init = 1 + rng.below(max_blocks * BU);
    let mut model = content(&mut rng, init as usize);
    create_sealed(&mut io, &model);
    if let Some(plan) = pool {
        let mut p = PagePool::with_room(rng.below(4) as usize);
        p.hidden = plan.hidden;
        io.pool = Some(p);
    }
    let mut prefix = 100u64;
    let nw = 3usize;
    let mut procs: Vec<Proc> = Vec::new();
    for w in 0..nw {
        prefix += 1;
        procs.push(open_proc(&mut io, prefix, wa, false, w != 0, model.len() as u64).unwrap());
    }
    let mut readers: Vec<Proc> = Vec::new();
    for r in 0..3 {
        prefix += 1;
        // 0: read_at, 1: read_at_mut, 2: read_at with a fixed length.
        readers.push(open_proc(&mut io, prefix, wa, r == 2, r == 1, model.len() as u64).unwrap());
    }
    let mut trace: Vec<String> = Vec::new();
    let maxlen = max_blocks * BU;
    let pick_len = |rng: &mut Rng, cur: u64| -> u64 {
        // Near a block or group boundary, or anywhere.
        let nb = cur.div_ceil(BU).max(1);
        let b = pick_block(rng, nb + 2).min(max_blocks - 1);
        match rng.below(4) {
            0 => b * BU,
            1 => b * BU + 1 + rng.below(BU - 1),
            2 => (b + 1) * BU,
            _ => 1 + rng.below(maxlen),
        }
        .clamp(1, maxlen)
    };
    for step in 0..steps {
        let cur = model.len() as u64;
        let op = rng.below(100);
        if pool.is_some() && rng.chance(5) {
            // A writer closes: what is published goes to disk.
            let p = &mut procs[rng.below(nw as u64) as usize];
            io.drain(p.f.cipher(), &mut p.nonces);
            counter.stamp += 2;
            trace.push(format!("step {step}: drain"));
            continue;
        }
        if op < 30 {
            // A write inside the file or an append (any writer).
            let w = rng.below(nw as u64) as usize;
            let b = pick_block(&mut rng, cur.div_ceil(BU));
            let start = (b * BU + if rng.chance(50) { rng.below(BU) } else { 0 })
                .min(cur + rng.below(3 * BU));
            let n = if rng.chance(50) {
                1 + rng.below(BU)
            } else {
                1 + rng.below(3 * BU)
            };
            let end = (start + n).min(maxlen);
            if end <= start {
                continue;
            }
            let data = content(&mut rng, (end - start) as usize);
            let p = &mut procs[w];
            counter.before(p, &mut rng);
            let r = p.f.write_at(&mut io, &mut p.nonces, &data, start);
            counter.after(p, true, &r);
            trace.push(format!(
                "step {step}: w{w} write [{start},{end}) len {cur} -> {:?}",
                r.as_ref().map(|_| ())
            ));
            if let Err(e) = r {
                return Err(format!("write failed {e:?}\n{}", trace.join("\n")));
            }
            if model.len() < end as usize {
                model.resize(end as usize, 0);
            }
            model[start as usize..end as usize].copy_from_slice(&data);
        } else if op < 45 {
            // set_len by one handle; sometimes a cut and regrowth to the
            // same size by another handle (or by a write).
            let w = rng.below(nw as u64) as usize;
            let new = pick_len(&mut rng, cur);
            let p = &mut procs[w];
            counter.before(p, &mut rng);
            let r = p.f.set_len(&mut io, &mut p.nonces, new);
            counter.after(p, true, &r);
            trace.push(format!(
                "step {step}: w{w} set_len {new} (from {cur}) -> {:?}",
                r
            ));
            if let Err(e) = r {
                return Err(format!("set_len failed {e:?}\n{}", trace.join("\n")));
            }
            model.resize(new as usize, 0);
            if new < cur && rng.chance(60) {
                let w2 = rng.below(nw as u64) as usize;
                let p = &mut procs[w2];
                counter.before(p, &mut rng);
                let r = if rng.chance(50) {
                    p.f.set_len(&mut io, &mut p.nonces, cur).map(|()| 0)
                } else {
                    let data = content(&mut rng, (cur - new) as usize);
                    let r = p.f.write_at(&mut io, &mut p.nonces, &data, new);
                    if r.is_ok() {
                        model.resize(new as usize, 0);
                        model.extend_from_slice(&data);
                    }
                    r
                };
                counter.after(p, true, &r);
                trace.push(format!(
                    "step {step}: w{w2} regrow to {cur} -> {:?}",
                    r.as_ref().map(|_| ())
                ));
                if let Err(e) = r {
                    return Err(format!("regrow failed {e:?}\n{}", trace.join("\n")));
                }
                model.resize(cur as usize, 0);
            }
        } else {
            let cur = model.len() as u64;
            let who = rng.below(1 + nw as u64 + 3);
            let b = pick_block(&mut rng, cur.div_ceil(BU));
            let off = (b * BU + if rng.chance(60) { rng.below(BU) } else { 0 }).min(cur - 1);
            let n = if rng.chance(40) {
                1 + rng.below(2 * BU)
            } else {
                BU - off % BU
            } as usize;
            let mut out = vec![0u8; n];
            let (r, fixed) = match who {
                0 => {
                    prefix += 1;
                    let r = open_proc(&mut io, prefix, wa, false, rng.chance(50), cur)
                        .and_then(|mut p| read_with(&mut p, &mut io, &mut out, off));
                    (r, None)
                }
                w if (w as usize) <= nw => {
                    let p = &mut procs[w as usize - 1];
                    counter.before(p, &mut rng);
                    let r = read_with(p, &mut io, &mut out, off);
                    counter.after(p, false, &r);
                    (r, p.fixed)
                }
                r => {
                    let p = &mut readers[r as usize - 1 - nw];
                    counter.before(p, &mut rng);
                    let r = read_with(p, &mut io, &mut out, off);
                    counter.after(p, false, &r);
                    (r, p.fixed)
                }
            };
            trace.push(format!(
                "step {step}: read by {who} [{off},+{n}) len {cur} fixed {fixed:?} -> {:?}",
                r.as_ref().map_err(|e| format!("{e:?}"))
            ));
            let want_end = (off + n as u64).min(cur);
            match r {
                Ok(got) => {
                    let got_end = off + got as u64;
                    if fixed.is_none() && got_end != want_end {
                        return Err(format!(
                            "read returned {got}, want {}\n{}",
                            want_end - off,
                            trace.join("\n")
                        ));
                    }
                    if got_end > cur {
                        return Err(format!(
                            "read past the current end ({got_end} > {cur})\n{}",
                            trace.join("\n")
                        ));
                    }
                    if out[..got] != model[off as usize..got_end as usize] {
                        let first_bad = (0..got)
                            .find(|&k| out[k] != model[off as usize + k])
                            .unwrap();
                        return Err(format!(
                            "WRONG DATA at logical {} (block {})\n{}",
                            off + first_bad as u64,
                            (off + first_bad as u64) / BU,
                            trace.join("\n")
                        ));
                    }
                }
                Err(e) => {
                    if !matches!(fixed, Some(l) if l != cur) {
                        return Err(format!("spurious error {e:?}\n{}", trace.join("\n")));
                    }
                }
            }
        }
    }
    if let Some(p) = io.pool.as_ref().filter(|p| p.room > 0 && !p.hidden) {
        // The pool was in play, not bypassed.
        if p.published == 0 || p.served == 0 {
            return Err(format!(
                "pool unused: {} published, {} served",
                p.published, p.served
            ));
        }
    }
    Ok(())
}

#[test]
fn setlen_small_files() {
    for seed in 1..=seeds(200) {
        run_setlen(seed * 31, 200, 6, true, 0).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_three_groups() {
    for seed in 1..=seeds(20) {
        run_setlen(seed * 131, 150, 3 * 256 + 3, true, 0)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_three_groups_no_write_ahead() {
    for seed in 1..=seeds(20) {
        run_setlen(seed * 137, 150, 3 * 256 + 3, false, 0)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

// The same families with the change counter of FORMAT.md §8.2: handles claim
// "unchanged" whenever the counter allows it (most calls of a handle that
// follows its own writes), so settled state is reused across calls.

#[test]
fn setlen_small_files_with_change_counter() {
    for seed in 1..=seeds(200) {
        run_setlen(seed * 41, 200, 6, true, 90).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_three_groups_with_change_counter() {
    for seed in 1..=seeds(20) {
        run_setlen(seed * 151, 150, 3 * 256 + 3, true, 90)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_three_groups_no_write_ahead_with_change_counter() {
    for seed in 1..=seeds(20) {
        run_setlen(seed * 157, 150, 3 * 256 + 3, false, 90)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

// The same family with the page pool of FORMAT.md §8.3 (no write ahead: a
// WAL handle never publishes): pages published by any handle, a pool of 0
// to 3 pages (so that published, written-through and drained pages mix),
// drains between calls, with and without the change counter.

fn pooled(seed: u64, steps: usize, max_blocks: u64, claims: u64) -> Result<(), String> {
    let plan = PoolPlan { hidden: false };
    run_setlen_counted(seed, steps, max_blocks, false, claims, false, Some(plan))
}

#[test]
fn setlen_small_files_with_page_pool() {
    for seed in 1..=seeds(200) {
        pooled(seed * 43, 200, 6, 0).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_small_files_with_page_pool_and_change_counter() {
    for seed in 1..=seeds(200) {
        pooled(seed * 47, 200, 6, 90).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_three_groups_with_page_pool() {
    for seed in 1..=seeds(20) {
        pooled(seed * 163, 150, 3 * 256 + 3, 0).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn setlen_three_groups_with_page_pool_and_change_counter() {
    for seed in 1..=seeds(20) {
        pooled(seed * 167, 150, 3 * 256 + 3, 90).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// Control for the `*_with_page_pool` tests: when readers do not see the
/// pool (a pool mapped after fork), the disk's pages are older than the
/// data and the model must notice.
#[test]
fn control_a_pool_that_readers_do_not_see_fails_the_model() {
    let plan = PoolPlan { hidden: true };
    let failed = (1..=20)
        .filter(|seed| run_setlen_counted(seed * 43, 200, 6, false, 0, false, Some(plan)).is_err())
        .count();
    assert!(
        failed >= 10,
        "only {failed} of 20 seeds caught the hidden pool"
    );
}

/// Control for the `*_with_change_counter` tests: the same model with a
/// counter that misses writes (a writer outside the shims) must catch
/// handles that then use stale state.
#[test]
fn control_a_counter_that_misses_writes_fails_the_model() {
    let failed = (1..=20)
        .filter(|seed| run_setlen_counted(seed * 41, 200, 6, true, 90, true, None).is_err())
        .count();
    assert!(
        failed >= 10,
        "only {failed} of 20 seeds caught the stale claims"
    );
}

/// Control for the death families with the counter: a handle that opened a
/// block under its previous version while a write ahead stalled keeps that
/// plaintext unless the bump after the stalled write makes it revalidate.
#[test]
fn control_a_stalled_write_without_its_closing_bump_fails_the_death_model() {
    let failed = (1..=400)
        .filter(|seed| {
            run_deaths_counted(seed * 65_539, 300, 6, 5000, true, 90, true, false).is_err()
        })
        .count();
    eprintln!("{failed} of 400 seeds caught the stale cache");
    assert!(failed >= 2, "only {failed} of 400 seeds caught it");
}
