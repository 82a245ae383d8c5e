//! The depth-limited archived vector used for the recursive parts of the protocol (nested txns).
//!
//! rkyv validates recursively, so an unbounded nesting of `TxnRequest`s inside `RequestOp`s would
//! let a small malicious payload (a few dozen bytes per level) drive the validator's recursion past
//! the thread's stack. Every `Vec<RequestOp>`/`Vec<ResponseOp>` inside a txn is archived through
//! [`DepthLimited`] as a [`NestedVec`], whose `CheckBytes` counts the nesting on a per-thread
//! counter and fails validation beyond [`crate::limits::MAX_TXN_DEPTH`] before recursing (D1).

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;

use rkyv::bytecheck::CheckBytes;
use rkyv::munge::munge;
use rkyv::rancor::{Fallible, Source};
use rkyv::ser::{Allocator, Writer};
use rkyv::validation::ArchiveContext;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, DeserializeWith, SerializeWith};
use rkyv::{Archive, Deserialize, Place, Portable, Serialize};

use crate::limits::MAX_TXN_DEPTH;

/// rkyv "with" wrapper: archives a `Vec<T>` as a [`NestedVec`] (same layout as `ArchivedVec`).
#[derive(Debug)]
pub struct DepthLimited;

/// The archived form of a depth-limited `Vec<T>`: derefs to `ArchivedVec<T>` (so `.iter()`,
/// `.len()`, indexing work as on any archived vector).
#[derive(Portable)]
#[rkyv(crate = rkyv)]
#[repr(transparent)]
pub struct NestedVec<T>(ArchivedVec<T>);

impl<T> Deref for NestedVec<T> {
    type Target = ArchivedVec<T>;
    fn deref(&self) -> &ArchivedVec<T> {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for NestedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Archive> ArchiveWith<Vec<T>> for DepthLimited {
    type Archived = NestedVec<T::Archived>;
    type Resolver = VecResolver;

    fn resolve_with(field: &Vec<T>, resolver: VecResolver, out: Place<Self::Archived>) {
        munge!(let NestedVec(inner) = out);
        field.resolve(resolver, inner);
    }
}

impl<T, S> SerializeWith<Vec<T>, S> for DepthLimited
where
    T: Serialize<S>,
    S: Fallible + Allocator + Writer + ?Sized,
{
    fn serialize_with(field: &Vec<T>, serializer: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::<T::Archived>::serialize_from_slice(field.as_slice(), serializer)
    }
}

impl<T, D> DeserializeWith<NestedVec<T::Archived>, Vec<T>, D> for DepthLimited
where
    T: Archive,
    ArchivedVec<T::Archived>: Deserialize<Vec<T>, D>,
    D: Fallible + ?Sized,
{
    fn deserialize_with(
        field: &NestedVec<T::Archived>,
        deserializer: &mut D,
    ) -> Result<Vec<T>, D::Error> {
        field.0.deserialize(deserializer)
    }
}

thread_local! {
    /// How many `NestedVec`s the validator on this thread is currently inside.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// Set when the validator on this thread refused a nesting since [`take_too_deep`] last
    /// ran: rancor drops an error's message in builds without debug assertions, and the caller
    /// still owes the client a clear reason.
    static TOO_DEEP: Cell<bool> = const { Cell::new(false) };
}

/// Whether a validation on this thread was refused for its nesting since the last call (and
/// forgets it).
pub(crate) fn take_too_deep() -> bool {
    TOO_DEEP.with(|t| t.replace(false))
}

/// Holds one level of the per-thread nesting count; releases it when dropped (also on error).
struct DepthGuard;

impl DepthGuard {
    fn enter() -> Option<DepthGuard> {
        DEPTH.with(|d| {
            let depth = d.get();
            if depth >= MAX_TXN_DEPTH {
                None
            } else {
                d.set(depth + 1);
                Some(DepthGuard)
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// The validation error for a txn nested deeper than [`MAX_TXN_DEPTH`].
#[derive(Debug)]
pub struct NestingTooDeep;

impl fmt::Display for NestingTooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "txn nesting deeper than {MAX_TXN_DEPTH}")
    }
}

impl std::error::Error for NestingTooDeep {}

// SAFETY: `NestedVec<T>` is `repr(transparent)` over `ArchivedVec<T>`, so a pointer to it is a
// valid pointer to an `ArchivedVec<T>` with the same bytes; we only add a check (the depth limit)
// before delegating to `ArchivedVec`'s own complete validation, and return Ok only when it does.
unsafe impl<T, C> CheckBytes<C> for NestedVec<T>
where
    T: CheckBytes<C>,
    C: Fallible + ArchiveContext + ?Sized,
    C::Error: Source,
{
    // SAFETY: a trait method whose contract (`value` aligned, pointing to readable bytes for
    // `Self`) is the caller's; the body adds a depth check and forwards under the same contract.
    unsafe fn check_bytes(value: *const Self, context: &mut C) -> Result<(), C::Error> {
        // D1: bound the validator's recursion before descending into the nested ops.
        let Some(_guard) = DepthGuard::enter() else {
            TOO_DEEP.with(|t| t.set(true));
            return Err(C::Error::new(NestingTooDeep));
        };
        // SAFETY: the caller guarantees `value` is aligned and points to enough readable bytes
        // for `Self`; `Self` has exactly the layout of `ArchivedVec<T>` (repr(transparent)).
        unsafe { ArchivedVec::<T>::check_bytes(value.cast::<ArchivedVec<T>>(), context) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_and_releases() {
        let mut guards = Vec::new();
        for _ in 0..MAX_TXN_DEPTH {
            guards.push(DepthGuard::enter().expect("below the limit"));
        }
        assert!(DepthGuard::enter().is_none());
        guards.pop();
        assert!(DepthGuard::enter().is_some());
        guards.clear();
        assert_eq!(DEPTH.with(Cell::get), 0);
    }
}
