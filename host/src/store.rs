//! What a host keeps across restarts, behind a small trait so a shared store (Redis) can come
//! later without touching the gate.
//!
//! - the newest policy version accepted, so an older table is refused (anti-rollback);
//! - the revocations, by agent name, so a restart un-revokes no one and the issuer can refuse
//!   them (`tollgate issue --state DIR`);
//! - snapshots of the counters, with the audit-log offset they cover: a restart loads the snapshot
//!   and replays the state entries the log holds after that offset.
//!
//! [`FileStore`] keeps them in a directory: `policy`, `revocations` (one line per revocation:
//! agent, Unix time, reason, tab-separated; appended and synced), `snapshot` (binary, written to a
//! temporary file, synced and renamed, so a crash leaves the old or the new one).

use crate::HostError;
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tollgate_runtime::gate::{Slot, SLOT_SIZE};

/// The counters at one point of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub policy_hash: [u8; 32],
    /// The audit log's length when the snapshot was taken: state entries before it are included.
    pub log_offset: u64,
    /// The gate's clock.
    pub latest: u64,
    pub slots: Vec<Slot>,
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"TGSS";
const SNAPSHOT_VERSION: u16 = 1;

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.slots.len() * SLOT_SIZE);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.policy_hash);
        out.extend_from_slice(&self.log_offset.to_le_bytes());
        out.extend_from_slice(&self.latest.to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u64).to_le_bytes());
        for slot in &self.slots {
            out.extend_from_slice(&slot.encode());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if Sha256::digest(body).as_slice() != digest
            || body.get(..4)? != SNAPSHOT_MAGIC
            || body.get(4..6)? != SNAPSHOT_VERSION.to_le_bytes()
        {
            return None;
        }
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        let policy_hash: [u8; 32] = body.get(6..38)?.try_into().ok()?;
        let count = usize::try_from(u64_at(54)?).ok()?;
        let slots = body.get(62..)?;
        if slots.len() != count.checked_mul(SLOT_SIZE)? {
            return None;
        }
        Some(Snapshot {
            policy_hash,
            log_offset: u64_at(38)?,
            latest: u64_at(46)?,
            slots: slots
                .chunks(SLOT_SIZE)
                .map(Slot::decode)
                .collect::<Option<Vec<_>>>()?,
        })
    }
}

/// What a host keeps across restarts.
pub trait StateStore: Send {
    /// Accepts a table or refuses it: a version below the newest accepted, or another table with
    /// the same version, is a rollback.
    fn accept_policy(&mut self, version: u64, hash: &[u8; 32]) -> Result<(), HostError>;
    /// The revoked agents, by name.
    fn revocations(&self) -> Result<Vec<String>, HostError>;
    /// Records a revocation durably before it is reported.
    fn record_revocation(&mut self, agent: &str, time: u64, reason: &str) -> std::io::Result<()>;
    /// The newest snapshot, if any.
    fn load_snapshot(&self) -> Result<Option<Snapshot>, HostError>;
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> std::io::Result<()>;
}

/// Everything in memory: for tests and benchmarks, and for hosts that want nothing to survive.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pub policy: Option<(u64, [u8; 32])>,
    pub revoked: Vec<String>,
    pub snapshot: Option<Snapshot>,
}

impl StateStore for MemoryStore {
    fn accept_policy(&mut self, version: u64, hash: &[u8; 32]) -> Result<(), HostError> {
        check_floor(self.policy, version, hash, Path::new("memory"))?;
        self.policy = Some((version, *hash));
        Ok(())
    }

    fn revocations(&self) -> Result<Vec<String>, HostError> {
        Ok(self.revoked.clone())
    }

    fn record_revocation(&mut self, agent: &str, _: u64, _: &str) -> std::io::Result<()> {
        self.revoked.push(agent.to_owned());
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<Snapshot>, HostError> {
        Ok(self.snapshot.clone())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> std::io::Result<()> {
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }
}

fn check_floor(
    accepted: Option<(u64, [u8; 32])>,
    version: u64,
    hash: &[u8; 32],
    path: &Path,
) -> Result<(), HostError> {
    match accepted {
        Some((accepted, _)) if version < accepted => Err(HostError::Rollback {
            version,
            accepted,
            path: path.to_owned(),
        }),
        Some((accepted, accepted_hash)) if version == accepted && accepted_hash != *hash => {
            Err(HostError::SameVersionOtherPolicy { version })
        }
        _ => Ok(()),
    }
}

/// A state directory.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating) a state directory.
    pub fn open(dir: &Path) -> Result<FileStore, HostError> {
        std::fs::create_dir_all(dir).map_err(|e| HostError::io("create", dir, e))?;
        Ok(FileStore {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Reads the revocations of a state directory (empty when it holds none).
pub fn read_revocations(dir: &Path) -> Result<Vec<String>, HostError> {
    let path = dir.join("revocations");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|line| line.split('\t').next())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(HostError::io("read", path, error)),
    }
}

/// Writes a file so that a crash leaves the old or the new content: a synced temporary file,
/// renamed over the old one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

impl StateStore for FileStore {
    fn accept_policy(&mut self, version: u64, hash: &[u8; 32]) -> Result<(), HostError> {
        let path = self.path("policy");
        let accepted = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut accepted_version = None;
                let mut accepted_hash = None;
                for line in text.lines() {
                    match line.split_once(' ') {
                        Some(("version", v)) => accepted_version = v.trim().parse::<u64>().ok(),
                        Some(("hash", h)) => {
                            accepted_hash = hex::decode(h.trim())
                                .ok()
                                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                        }
                        _ => {}
                    }
                }
                match (accepted_version, accepted_hash) {
                    (Some(v), Some(h)) => Some((v, h)),
                    _ => {
                        return Err(HostError::Damaged {
                            path,
                            why: "it is not a policy record; restore it from a backup (it is how this host refuses older tables)".to_owned(),
                        })
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(HostError::io("read", path, error)),
        };
        check_floor(accepted, version, hash, &path)?;
        if accepted.map(|(v, _)| v) == Some(version) {
            return Ok(());
        }
        let text = format!("version {version}\nhash {}\n", hex::encode(hash));
        write_atomically(&path, text.as_bytes()).map_err(|e| HostError::io("write", &path, e))
    }

    fn revocations(&self) -> Result<Vec<String>, HostError> {
        read_revocations(&self.dir)
    }

    fn record_revocation(&mut self, agent: &str, time: u64, reason: &str) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("revocations"))?;
        file.write_all(format!("{agent}\t{time}\t{reason}\n").as_bytes())?;
        file.sync_all()
    }

    fn load_snapshot(&self) -> Result<Option<Snapshot>, HostError> {
        let path = self.path("snapshot");
        match std::fs::read(&path) {
            Ok(bytes) => Snapshot::decode(&bytes).map(Some).ok_or(HostError::Damaged {
                path,
                why: "the snapshot does not verify; delete it to rebuild the counters from the whole audit log".to_owned(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(HostError::io("read", path, error)),
        }
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> std::io::Result<()> {
        write_atomically(&self.path("snapshot"), &snapshot.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_runtime::gate::SlotKind;

    #[test]
    fn snapshots_round_trip_and_refuse_any_change() {
        let snapshot = Snapshot {
            policy_hash: [4; 32],
            log_offset: 1234,
            latest: 99,
            slots: vec![
                Slot::EMPTY,
                Slot {
                    kind: SlotKind::Repeat,
                    id: 3,
                    agent: 2,
                    digest: [9; 16],
                    window: 77,
                    value: -5,
                },
            ],
        };
        let bytes = snapshot.encode();
        assert_eq!(Snapshot::decode(&bytes), Some(snapshot));
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert_eq!(Snapshot::decode(&flipped), None, "flip at {at}");
        }
        assert_eq!(Snapshot::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn the_policy_floor_refuses_rollbacks() {
        let mut store = MemoryStore::default();
        store.accept_policy(3, &[1; 32]).unwrap();
        store.accept_policy(3, &[1; 32]).unwrap();
        assert!(matches!(
            store.accept_policy(2, &[2; 32]),
            Err(HostError::Rollback { .. })
        ));
        assert!(matches!(
            store.accept_policy(3, &[2; 32]),
            Err(HostError::SameVersionOtherPolicy { .. })
        ));
        store.accept_policy(4, &[2; 32]).unwrap();
    }
}
