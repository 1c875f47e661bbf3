//! [`PhysicalIo`] over a raw fd through the real libc functions: EINTR and
//! short transfers are retried here, so the format code sees whole reads
//! (short only at end of file) and whole writes.

use std::ffi::c_int;

use ephcrypt_format::meta::Page;
use ephcrypt_format::{PhysicalIo, PoolBase, Published};
use libc::off_t;

use super::changes::Watch;
use super::poison::FileId;
use super::pool::{self, Found, PoolKey};
use super::real::{errno, real, Errno};

/// A handle whose metadata pages go to the shared pool (FORMAT.md §8.3).
#[derive(Clone, Copy)]
pub(crate) struct Pooled {
    pub(crate) id: FileId,
    /// A WAL segment: its pages survive a crash-restart's reset.
    pub(crate) wal: bool,
}

/// Physical I/O on one of our fds.
pub(crate) struct FdIo<'a> {
    pub(crate) fd: c_int,
    /// The file's physical length as last seen or set by this process
    /// (`None` = ask fstat). Saves one syscall per write on private files.
    pub(crate) len: &'a mut Option<u64>,
    /// Files other handles read from disk: the change counter, bumped
    /// before the first physical write (and, by the caller through
    /// [`Watch::finish`], after the last), shim/changes.rs.
    watch: Option<&'a mut Watch>,
    pool: Option<Pooled>,
}

impl<'a> FdIo<'a> {
    /// I/O that no other handle follows (a file being created, a private
    /// file, a scratch copy).
    pub(crate) fn new(fd: c_int, len: &'a mut Option<u64>) -> Self {
        Self {
            fd,
            len,
            watch: None,
            pool: None,
        }
    }

    /// I/O on a file other handles may have cached: writes bump `watch`.
    pub(crate) fn watched(fd: c_int, len: &'a mut Option<u64>, watch: &'a mut Watch) -> Self {
        Self {
            fd,
            len,
            watch: Some(watch),
            pool: None,
        }
    }

    /// This I/O's metadata pages are published in the shared pool and
    /// read from it first (a file-set member: FORMAT.md §8.3), if the pool
    /// is mapped.
    pub(crate) fn with_pool(mut self, pooled: Pooled) -> Self {
        self.pool = pool::available().then_some(pooled);
        self
    }

    #[inline]
    fn before_write(&mut self) {
        if let Some(w) = self.watch.as_deref_mut() {
            w.start_write();
        }
    }
}

impl PhysicalIo for FdIo<'_> {
    type Error = Errno;

    fn read_at(&mut self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = off_t::try_from(off + done as u64).map_err(|_| Errno(libc::EFBIG))?;
            // SAFETY: buf[done..] is valid writable memory of that length.
            let n = unsafe {
                (real().pread)(
                    self.fd,
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    at,
                )
            };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(Errno(e));
            }
            if n == 0 {
                break;
            }
            done += n as usize;
        }
        Ok(done)
    }

    fn write_all_at(&mut self, buf: &[u8], off: u64) -> Result<(), Errno> {
        self.before_write();
        let mut done = 0usize;
        while done < buf.len() {
            let at = off_t::try_from(off + done as u64).map_err(|_| Errno(libc::EFBIG))?;
            // SAFETY: buf[done..] is valid readable memory of that length.
            let n = unsafe {
                (real().pwrite)(self.fd, buf[done..].as_ptr().cast(), buf.len() - done, at)
            };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                *self.len = None;
                return Err(Errno(e));
            }
            if n == 0 {
                *self.len = None;
                return Err(Errno(libc::EIO));
            }
            done += n as usize;
        }
        if let Some(len) = self.len.as_mut() {
            *len = (*len).max(off + buf.len() as u64);
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        let at = off_t::try_from(len).map_err(|_| Errno(libc::EFBIG))?;
        self.before_write();
        // SAFETY: plain syscall wrapper on our fd.
        if unsafe { (real().ftruncate)(self.fd, at) } != 0 {
            *self.len = None;
            return Err(Errno(errno()));
        }
        *self.len = Some(len);
        Ok(())
    }

    fn len(&mut self) -> Result<u64, Errno> {
        if let Some(len) = *self.len {
            return Ok(len);
        }
        let st = fstat(self.fd)?;
        let len = st.st_size as u64;
        *self.len = Some(len);
        Ok(len)
    }

    fn publishes(&self) -> bool {
        self.pool.is_some()
    }

    fn publish_page(
        &mut self,
        file_id: &[u8; 16],
        group: u64,
        page: &Page,
        base: Option<PoolBase>,
    ) -> Result<Option<u64>, Errno> {
        let Some(p) = self.pool.as_ref() else {
            return Ok(None);
        };
        let key = PoolKey::new(p.id, file_id);
        let wal = p.wal;
        // A changed page is a write: other handles' claims must end.
        self.before_write();
        pool::publish(
            &key,
            group,
            page,
            wal,
            base.map(|b| (b.version, b.changed.0)),
        )
    }

    fn published_page(
        &mut self,
        file_id: &[u8; 16],
        group: u64,
        page: &mut Page,
        have: Option<u64>,
    ) -> Result<Published, Errno> {
        let Some(p) = self.pool.as_ref() else {
            return Ok(Published::Absent);
        };
        Ok(
            match pool::lookup(&PoolKey::new(p.id, file_id), group, page, have)? {
                Found::Absent => Published::Absent,
                Found::Current => Published::Current,
                Found::Copied(v) => Published::Copied(v),
            },
        )
    }
}

/// `fstat` through the real function.
pub(crate) fn fstat(fd: c_int) -> Result<libc::stat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: st is a valid out-pointer for fstat.
    if unsafe { (real().fstat)(fd, st.as_mut_ptr()) } != 0 {
        return Err(Errno(errno()));
    }
    // SAFETY: fstat succeeded and filled the struct.
    Ok(unsafe { st.assume_init() })
}
