//! The compiled forms both `policy` (which builds them) and `verify` (which
//! uses them) need: verification keys ([`keys`]), keyless identity and
//! chain rules ([`identity`]) and Notation trust policies ([`notation`]); and what `policy` and `trust` share: the field
//! error of a spec ([`error`]) and the status sigil writes ([`status`]). A leaf: it imports no other sigil module, so
//! neither `policy` nor `verify` depends on the other through it.

pub mod error;
pub mod identity;
pub mod keys;
pub mod notation;
pub mod status;
