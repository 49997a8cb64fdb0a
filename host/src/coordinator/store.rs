//! What every replica of an offsets partition applies: its groups'
//! membership as of their last rebalance and their committed offsets.
//! Pure state, rebuilt by applying the partition's log in order, so every
//! replica (and every restart) holds the same.

use super::record::{CommittedOffset, DecodeError, GroupRecord, Membership};
use std::collections::BTreeMap;

/// Format byte of an offsets partition's snapshot data written by this
/// release. Deliberately unlike every other stored format's byte (1: group
/// records, partition checkpoints, metadata): a snapshot of another kind is
/// refused by its first byte, never parsed as this one, and this one never
/// parses as a partition checkpoint.
pub const SNAPSHOT_FORMAT_V1: u8 = 0x47; // 'G'

/// One group as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredGroup {
    pub membership: Membership,
    /// By (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

/// An offsets partition's groups, by group id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStore {
    groups: BTreeMap<String, StoredGroup>,
    /// Records that did not decode (skipped on every replica alike).
    pub skipped: u64,
}

impl GroupStore {
    /// Applies one entry of the partition's log.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let record = match GroupRecord::decode(bytes) {
            Ok(record) => record,
            Err(e) => {
                self.skipped += 1;
                return Err(e);
            }
        };
        self.apply_record(record);
        Ok(())
    }

    pub fn apply_record(&mut self, record: GroupRecord) {
        match record {
            GroupRecord::Membership { group, state } => {
                self.groups.entry(group).or_default().membership = state;
            }
            GroupRecord::Offsets { group, offsets } => {
                let stored = self.groups.entry(group).or_default();
                for offset in offsets {
                    stored
                        .offsets
                        .insert((offset.topic.clone(), offset.partition), offset);
                }
            }
            GroupRecord::DeleteGroup { group } => {
                self.groups.remove(&group);
            }
            GroupRecord::DeleteOffsets { group, partitions } => {
                if let Some(stored) = self.groups.get_mut(&group) {
                    for key in partitions {
                        stored.offsets.remove(&key);
                    }
                }
            }
        }
    }

    pub fn group(&self, id: &str) -> Option<&StoredGroup> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&String, &StoredGroup)> {
        self.groups.iter()
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The records that rebuild this store from empty, in order: per group,
    /// its membership, then its offsets.
    pub fn records(&self) -> impl Iterator<Item = GroupRecord> + '_ {
        self.groups.iter().flat_map(|(id, g)| {
            [
                GroupRecord::Membership {
                    group: id.clone(),
                    state: g.membership.clone(),
                },
                GroupRecord::Offsets {
                    group: id.clone(),
                    offsets: g.offsets.values().cloned().collect(),
                },
            ]
        })
    }

    /// The state as a Raft snapshot's data: format byte
    /// [`SNAPSHOT_FORMAT_V1`], then the [`records`](Self::records) that
    /// rebuild it, each as a 4-byte big-endian length and the record in its
    /// stored encoding ([`GroupRecord::encode`], its own format byte first).
    /// A replica restored from it continues with the log after it exactly as
    /// one that applied the whole log.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![SNAPSHOT_FORMAT_V1];
        for record in self.records() {
            let encoded = record.encode();
            let len = u32::try_from(encoded.len()).expect("a group record under 4 GiB");
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&encoded);
        }
        bytes
    }

    /// The store a snapshot's data rebuilds: its records applied to an empty
    /// store. An unknown format, a truncated or undecodable record is an
    /// error (never a partial store).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut rest = match bytes.split_first() {
            Some((&SNAPSHOT_FORMAT_V1, rest)) => rest,
            Some((&format, _)) => return Err(DecodeError::UnknownSnapshotFormat(format)),
            None => return Err(DecodeError::Malformed("empty snapshot".into())),
        };
        let mut store = Self::default();
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(DecodeError::Malformed(
                    "snapshot truncated in a length".into(),
                ));
            };
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return Err(DecodeError::Malformed(
                    "snapshot truncated in a record".into(),
                ));
            }
            let (record, tail) = tail.split_at(len);
            store.apply_record(GroupRecord::decode(record)?);
            rest = tail;
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::record::{Protocol, StoredMember};

    fn commit(topic: &str, partition: i32, offset: i64) -> CommittedOffset {
        CommittedOffset {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 2,
            metadata: None,
            commit_ms: 1,
        }
    }

    #[test]
    fn offsets_and_membership_follow_the_log_in_order() {
        let mut store = GroupStore::default();
        let offsets = |o: Vec<CommittedOffset>| {
            GroupRecord::Offsets {
                group: "g".into(),
                offsets: o,
            }
            .encode()
        };
        store
            .apply(&offsets(vec![commit("t", 0, 5), commit("t", 1, 7)]))
            .unwrap();
        store.apply(&offsets(vec![commit("t", 0, 9)])).unwrap();
        let g = store.group("g").unwrap();
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 9);
        assert_eq!(g.offsets[&("t".to_string(), 1)].offset, 7);
        store
            .apply(
                &GroupRecord::DeleteOffsets {
                    group: "g".into(),
                    partitions: vec![("t".into(), 1)],
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(store.group("g").unwrap().offsets.len(), 1);
        store
            .apply(
                &GroupRecord::Membership {
                    group: "g".into(),
                    state: Membership {
                        generation: 4,
                        ..Membership::default()
                    },
                }
                .encode(),
            )
            .unwrap();
        let g = store.group("g").unwrap();
        assert_eq!(g.membership.generation, 4);
        assert_eq!(g.offsets.len(), 1, "membership leaves offsets alone");
        store
            .apply(&GroupRecord::DeleteGroup { group: "g".into() }.encode())
            .unwrap();
        assert!(store.group("g").is_none());
    }

    fn member(id: &str, assignment: Vec<u8>) -> StoredMember {
        StoredMember {
            member_id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocols: vec![Protocol {
                name: "range".into(),
                metadata: vec![0, 1, 255],
            }],
            assignment,
        }
    }

    /// Several groups with members and offsets, some offsets and a group
    /// deleted, a group emptied of offsets (still a group).
    fn busy_store() -> GroupStore {
        let mut store = GroupStore::default();
        let offsets = |group: &str, o: Vec<CommittedOffset>| GroupRecord::Offsets {
            group: group.into(),
            offsets: o,
        };
        for (group, generation) in [("a", 3), ("b", 1), ("gone", 2), ("emptied", 5)] {
            store.apply_record(GroupRecord::Membership {
                group: group.into(),
                state: Membership {
                    protocol_type: Some("consumer".into()),
                    generation,
                    protocol: Some("range".into()),
                    leader: Some(format!("{group}-1")),
                    members: vec![
                        member(&format!("{group}-1"), vec![1, 2]),
                        member(&format!("{group}-2"), vec![]),
                    ],
                },
            });
        }
        store.apply_record(offsets("a", vec![commit("t", 0, 5), commit("u", 3, 1)]));
        store.apply_record(offsets("a", vec![commit("t", 0, 8), commit("t", 1, 2)]));
        store.apply_record(offsets("b", vec![commit("t", 0, 1)]));
        store.apply_record(offsets("gone", vec![commit("t", 0, 4)]));
        store.apply_record(offsets("emptied", vec![commit("t", 0, 4)]));
        // Offsets only, never joined.
        store.apply_record(offsets("standalone", vec![commit("v", 0, 12)]));
        store.apply_record(GroupRecord::DeleteOffsets {
            group: "a".into(),
            partitions: vec![("u".into(), 3)],
        });
        store.apply_record(GroupRecord::DeleteOffsets {
            group: "emptied".into(),
            partitions: vec![("t".into(), 0)],
        });
        store.apply_record(GroupRecord::DeleteGroup {
            group: "gone".into(),
        });
        store
    }

    #[test]
    fn a_snapshot_restores_the_groups_and_the_log_continues_alike() {
        let mut store = busy_store();
        assert_eq!(store.len(), 4, "a, b, emptied, standalone");
        let bytes = store.encode_snapshot();
        assert_eq!(bytes[0], SNAPSHOT_FORMAT_V1);
        let mut restored = GroupStore::decode_snapshot(&bytes).unwrap();
        assert_eq!(restored, store);
        assert_eq!(restored.group("a").unwrap().offsets.len(), 2);
        assert_eq!(restored.group("a").unwrap().membership.members.len(), 2);
        assert!(restored.group("emptied").unwrap().offsets.is_empty());
        assert!(restored.group("gone").is_none());
        // Encoding is deterministic: a restored store snapshots the same.
        assert_eq!(restored.encode_snapshot(), bytes);
        for s in [&mut store, &mut restored] {
            s.apply_record(GroupRecord::Offsets {
                group: "b".into(),
                offsets: vec![commit("t", 0, 6)],
            });
            s.apply_record(GroupRecord::DeleteGroup { group: "a".into() });
        }
        assert_eq!(restored, store);
        // An empty store too.
        let empty = GroupStore::default();
        assert_eq!(
            GroupStore::decode_snapshot(&empty.encode_snapshot()).unwrap(),
            empty
        );
    }

    #[test]
    fn unknown_or_broken_snapshots_are_refused_and_never_taken_for_checkpoints() {
        let bytes = busy_store().encode_snapshot();
        let mut unknown = bytes.clone();
        unknown[0] = 2;
        assert_eq!(
            GroupStore::decode_snapshot(&unknown),
            Err(DecodeError::UnknownSnapshotFormat(2))
        );
        // The earlier JSON shape, and a partition checkpoint (format 1).
        assert_eq!(
            GroupStore::decode_snapshot(b"[]"),
            Err(DecodeError::UnknownSnapshotFormat(b'['))
        );
        let checkpoint = crate::partition_log::encode_checkpoint(&Default::default());
        assert_eq!(
            GroupStore::decode_snapshot(&checkpoint),
            Err(DecodeError::UnknownSnapshotFormat(1))
        );
        // ... and the other way round: this is no partition checkpoint.
        assert!(matches!(
            crate::partition_log::decode_checkpoint(&bytes),
            Err(crate::partition_log::entry::EntryError::UnknownFormat(
                SNAPSHOT_FORMAT_V1
            ))
        ));
        for cut in [bytes.len() - 1, 3, 1 + 4 + 2] {
            assert!(
                matches!(
                    GroupStore::decode_snapshot(&bytes[..cut]),
                    Err(DecodeError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        assert!(GroupStore::decode_snapshot(&[]).is_err());
        // A record inside of an unknown format: refused, not skipped.
        let mut inner = vec![SNAPSHOT_FORMAT_V1, 0, 0, 0, 2, 9, b'{'];
        assert_eq!(
            GroupStore::decode_snapshot(&inner),
            Err(DecodeError::UnknownFormat(9))
        );
        inner[5] = crate::coordinator::record::FORMAT_V1;
        assert!(matches!(
            GroupStore::decode_snapshot(&inner),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_is_skipped_and_counted_on_every_replica_alike() {
        let mut a = GroupStore::default();
        assert!(a.apply(&[0; 70]).is_err());
        assert_eq!(a.skipped, 1);
        assert!(a.is_empty());
    }
}
