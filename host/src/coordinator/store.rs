//! What every replica of an offsets partition applies: its groups'
//! membership as of their last rebalance and their committed offsets.
//! Pure state, rebuilt by applying the partition's log in order, so every
//! replica (and every restart) holds the same.

use super::record::{CommittedOffset, DecodeError, FORMAT_V1, GroupRecord, Membership};
use std::collections::BTreeMap;

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

    /// The state as a snapshot's data (format byte [`FORMAT_V1`], then
    /// JSON), for the partition storage's snapshots: a replica restored
    /// from it continues with the log after it exactly as one that applied
    /// the whole log.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let snapshot: Vec<SnapshotGroup> = self
            .groups
            .iter()
            .map(|(id, g)| SnapshotGroup {
                group: id.clone(),
                membership: g.membership.clone(),
                offsets: g.offsets.values().cloned().collect(),
            })
            .collect();
        let mut bytes = vec![FORMAT_V1];
        serde_json::to_writer(&mut bytes, &snapshot).expect("groups serialise");
        bytes
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, DecodeError> {
        let snapshot: Vec<SnapshotGroup> = match bytes.split_first() {
            Some((&FORMAT_V1, json)) => {
                serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))?
            }
            Some((&format, _)) => return Err(DecodeError::UnknownFormat(format)),
            None => return Err(DecodeError::Malformed("empty snapshot".into())),
        };
        let groups = snapshot
            .into_iter()
            .map(|g| {
                let offsets = g
                    .offsets
                    .into_iter()
                    .map(|o| ((o.topic.clone(), o.partition), o))
                    .collect();
                (
                    g.group,
                    StoredGroup {
                        membership: g.membership,
                        offsets,
                    },
                )
            })
            .collect();
        Ok(Self { groups, skipped: 0 })
    }
}

/// One group in a snapshot.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotGroup {
    group: String,
    membership: Membership,
    offsets: Vec<CommittedOffset>,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_snapshot_restores_the_groups_and_the_log_continues_alike() {
        let mut store = GroupStore::default();
        let offsets = |o: Vec<CommittedOffset>| GroupRecord::Offsets {
            group: "g".into(),
            offsets: o,
        };
        store.apply_record(offsets(vec![commit("t", 0, 5), commit("u", 3, 1)]));
        store.apply_record(GroupRecord::Membership {
            group: "h".into(),
            state: Membership {
                generation: 7,
                ..Membership::default()
            },
        });
        let mut restored = GroupStore::decode_snapshot(&store.encode_snapshot()).unwrap();
        assert_eq!(restored, store);
        for s in [&mut store, &mut restored] {
            s.apply_record(offsets(vec![commit("t", 0, 6)]));
            s.apply_record(GroupRecord::DeleteGroup { group: "h".into() });
        }
        assert_eq!(restored, store);
        assert_eq!(
            GroupStore::decode_snapshot(b"[]"),
            Err(DecodeError::UnknownFormat(b'['))
        );
    }

    #[test]
    fn garbage_is_skipped_and_counted_on_every_replica_alike() {
        let mut a = GroupStore::default();
        assert!(a.apply(&[0; 70]).is_err());
        assert_eq!(a.skipped, 1);
        assert!(a.is_empty());
    }
}
