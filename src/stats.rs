//! `pg_ephcrypt_stats`: per-class counters, in the style of pg_stat_*.

use ephcrypt_classify::ArtifactClass;
use ephcrypt_interpose::stats::{snapshot, Counter};
use pgrx::prelude::*;

use crate::epoch;

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_ephcrypt_stat_classes() -> TableIterator<
    'static,
    (
        name!(class, &'static str),
        name!(enabled, bool),
        name!(files_opened, i64),
        name!(files_created, i64),
        name!(bytes_sealed, i64),
        name!(bytes_opened, i64),
        name!(auth_failures, i64),
        name!(io_errors, i64),
        name!(stats_reset, Option<TimestampWithTimeZone>),
    ),
> {
    epoch::require_preloaded();
    let enabled = ephcrypt_interpose::shim::enabled_classes();
    let reset = crate::status::epoch_created_at();
    let rows: Vec<_> = ArtifactClass::ALL
        .iter()
        .map(|class| {
            let c = snapshot(*class);
            let get = |k: Counter| i64::try_from(c[k as usize]).unwrap_or(i64::MAX);
            (
                class.name(),
                enabled.contains(class),
                get(Counter::FilesOpened),
                get(Counter::FilesCreated),
                get(Counter::BytesSealed),
                get(Counter::BytesOpened),
                get(Counter::AuthFailures),
                get(Counter::IoErrors),
                reset,
            )
        })
        .collect();
    TableIterator::new(rows)
}
