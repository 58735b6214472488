//! The registry of extension fields: every field any record or message gained after v0.1.0,
//! by container, with its number. Numbers are never reused, not even for a field that was
//! removed (mark it `RETIRED_*` instead): an agent of an older release may still send it.
//!
//! Owns only the declarations (a number, a name, a type); the modules that own each record
//! or message read and write them. Adding a field (docs/upgrades.md, "Adding a field"): add
//! a `Field` constant here with the next free number of its container and list it in
//! `ALL` below (a test checks the numbers are unique per container), write it where the
//! record or message is built, read it with `Field::get` (absent = a writer of an older
//! release: decide its default there). Must not hold any logic.

use crate::ext::Field;
use crate::wire::ProtocolRange;

/// Fields of a metadata record (`meta::MetaRecord`), after its v0.1.0 fixed part.
pub mod record {
    use super::*;
    /// The protocol range its owner speaks (`wire::ProtocolRange`); absent: a v0.1.0 agent
    /// (`wire::PROTOCOL_V1`).
    pub const PROTOCOL: Field<ProtocolRange> = Field::new(1, "protocol");
    /// The owner is stopping to restart: "expect me back within this many milliseconds"
    /// (`core::restart`, bounded by `restart::MIN_GRACE`..=`MAX_GRACE`); absent: it is not.
    pub const RESTART: Field<u32> = Field::new(2, "restart");
    /// The instances of its services the fixed part cannot carry (`core::instances`: the
    /// ids of the first instance of each name that are not the name, and every further
    /// instance); absent: one instance per service, its id its name.
    pub const INSTANCES: Field<crate::instances::Instances> = Field::new(3, "instances");
    /// The owner's public keys (`member_key::MemberPub`: Ed25519 to verify its records,
    /// X25519 to seal key material to it); absent: an owner that does not sign.
    pub const MEMBER_KEY: Field<crate::member_key::MemberPub> = Field::new(4, "member_key");
    /// The owner's Ed25519 signature over the record without this field
    /// (`member_key::record_signer`); absent: unsigned.
    pub const SIGNATURE: Field<crate::member_key::RecordSig> = Field::new(5, "signature");
}

/// Fields of a `sync::ShoalMsg`, after its v0.1.0 fixed part.
pub(crate) mod shoal_msg {
    use super::*;
    /// `Push` only: the extension fields of its records, by index in `records`, which the
    /// fixed part (v0.1.0's layout, records not length-delimited) cannot carry.
    pub(crate) const RECORD_EXTS: Field<Vec<(u32, Vec<u8>)>> = Field::new(1, "record_exts");
}

/// Every field, by container, for the uniqueness test (and for readers of this file).
#[cfg(test)]
pub(crate) const ALL: &[(&str, u32, &str)] = &[
    ("record", record::PROTOCOL.number, record::PROTOCOL.name),
    ("record", record::RESTART.number, record::RESTART.name),
    ("record", record::INSTANCES.number, record::INSTANCES.name),
    ("record", record::MEMBER_KEY.number, record::MEMBER_KEY.name),
    ("record", record::SIGNATURE.number, record::SIGNATURE.name),
    (
        "shoal_msg",
        shoal_msg::RECORD_EXTS.number,
        shoal_msg::RECORD_EXTS.name,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_per_container() {
        let mut seen = std::collections::BTreeSet::new();
        for (container, number, name) in ALL {
            assert!(*number > 0, "{container}.{name}: numbers start at 1");
            assert!(
                seen.insert((*container, *number)),
                "{container}: number {number} used twice ({name})"
            );
        }
    }
}
