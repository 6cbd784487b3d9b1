//! What the server keeps in its data directory: the catalog (modules, tables) as one versioned
//! JSON file, each job's record in its own file (so that a job's change rewrites only that
//! job, however long the history), module bytes by content hash, and the bearer token. Every
//! file is replaced atomically.
//!
//! ```text
//! <data>/catalog.json          modules, tables, the next job id
//! <data>/modules/<sha256>.wasm  deployed components
//! <data>/jobs/<id>/job.json     a job's record
//! <data>/jobs/<id>/             its state directory (checkpoints, savepoints, RocksDB)
//! <data>/token                  the bearer token (mode 0600)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ServerError;

/// Bumped when the catalog's shape changes incompatibly. Format 1 kept the jobs inside
/// `catalog.json`; it is still read, and moved to per-job files on the first start.
const FORMAT_VERSION: u32 = 2;

/// The persisted catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Catalog {
    pub format_version: u32,
    pub modules: Vec<ModuleRecord>,
    pub tables: Vec<TableRecord>,
    /// Kept in `jobs/<id>/job.json`; only format 1 wrote them here.
    #[serde(default, skip_serializing)]
    pub jobs: Vec<JobRecord>,
    pub next_job: u64,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            modules: Vec::new(),
            tables: Vec::new(),
            jobs: Vec::new(),
            next_job: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ModuleRecord {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub size: u64,
    pub functions: Vec<FunctionRecord>,
    pub grants: GrantsRecord,
    pub deployed_millis: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FunctionRecord {
    pub name: String,
    pub kind: String,
    pub signature: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GrantsRecord {
    pub read_dirs: Vec<String>,
    pub clock: bool,
}

impl GrantsRecord {
    pub fn sandbox(&self) -> crate::wasm::SandboxGrants {
        crate::wasm::SandboxGrants {
            clock: self.clock,
            env: Vec::new(),
            read_only_dirs: self
                .read_dirs
                .iter()
                .map(|dir| (PathBuf::from(dir), dir.clone()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableRecord {
    pub name: String,
    pub ddl: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobStatus {
    Running,
    Finished,
    Failed,
    Cancelled,
    Stopped,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Stopped => "stopped",
        }
    }

    /// A job in this state may run again (resume, upgrade), so what it uses must stay.
    pub fn holds_modules(self) -> bool {
        matches!(self, JobStatus::Running | JobStatus::Stopped)
    }
}

/// A module version a job runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PinnedModule {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub id: u64,
    pub name: String,
    /// `batch` or `streaming`.
    pub mode: String,
    /// The whole script as submitted (statements before the query set the job up).
    pub script: String,
    /// Which statement of the script is this job's query.
    pub statement: usize,
    /// The query's text, for people.
    pub query: String,
    /// The server's tables as they were at submission.
    pub tables: Vec<TableRecord>,
    pub modules: Vec<PinnedModule>,
    pub status: JobStatus,
    /// The savepoint the job last started from (kept: a restart after a crash needs it when
    /// no checkpoint was taken since).
    pub from_savepoint: Option<String>,
    /// The savepoint it stopped with.
    pub savepoint: Option<String>,
    pub error: Option<String>,
    pub submitted_millis: i64,
    pub ended_millis: Option<i64>,
}

/// The data directory.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory (and its parts) if needed.
    pub fn open(root: &Path) -> Result<Self, ServerError> {
        for dir in [root.to_path_buf(), root.join("modules"), root.join("jobs")] {
            std::fs::create_dir_all(&dir).map_err(|e| ServerError::io(&dir, e))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn module_path(&self, digest: &str) -> PathBuf {
        self.root.join("modules").join(format!("{digest}.wasm"))
    }

    pub fn job_dir(&self, id: u64) -> PathBuf {
        self.root.join("jobs").join(id.to_string())
    }

    /// The catalog with every job's record, or an empty one on a first start.
    pub fn load_catalog(&self) -> Result<Catalog, ServerError> {
        let path = self.root.join("catalog.json");
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ServerError::io(&path, e)),
        };
        let mut catalog: Catalog = match bytes {
            None => Catalog::default(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ServerError::Config(format!("{} is not a Weir catalog: {e}", path.display()))
            })?,
        };
        match catalog.format_version {
            FORMAT_VERSION => {}
            1 => {
                for job in &catalog.jobs {
                    self.save_job(job)?;
                }
                catalog.format_version = FORMAT_VERSION;
                self.save_catalog(&catalog)?;
            }
            other => {
                return Err(ServerError::Config(format!(
                    "{} has catalog format {other}, this server reads {FORMAT_VERSION}",
                    path.display(),
                )));
            }
        }
        catalog.jobs = self.load_jobs()?;
        // A crash between a job's record and the catalog must not reuse its id.
        if let Some(last) = catalog.jobs.last() {
            catalog.next_job = catalog.next_job.max(last.id + 1);
        }
        Ok(catalog)
    }

    /// Every `jobs/<id>/job.json`, by id. A directory without a record is state a forgotten
    /// job left behind (its savepoints).
    fn load_jobs(&self) -> Result<Vec<JobRecord>, ServerError> {
        let dir = self.root.join("jobs");
        let entries = std::fs::read_dir(&dir).map_err(|e| ServerError::io(&dir, e))?;
        let mut jobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ServerError::io(&dir, e))?;
            let path = entry.path().join("job.json");
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ServerError::io(&path, e)),
            };
            let job: JobRecord = serde_json::from_slice(&bytes).map_err(|e| {
                ServerError::Config(format!("{} is not a Weir job record: {e}", path.display()))
            })?;
            jobs.push(job);
        }
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    /// Replaces the catalog (without the jobs): a temporary file, synced, renamed over the old
    /// one.
    pub fn save_catalog(&self, catalog: &Catalog) -> Result<(), ServerError> {
        let json = serde_json::to_vec_pretty(catalog)
            .map_err(|e| ServerError::Config(format!("cannot encode the catalog: {e}")))?;
        write_atomically(&self.root.join("catalog.json"), &json, None)
    }

    /// Replaces one job's record.
    pub fn save_job(&self, job: &JobRecord) -> Result<(), ServerError> {
        let dir = self.job_dir(job.id);
        std::fs::create_dir_all(&dir).map_err(|e| ServerError::io(&dir, e))?;
        let json = serde_json::to_vec_pretty(job)
            .map_err(|e| ServerError::Config(format!("cannot encode job {}: {e}", job.id)))?;
        write_atomically(&dir.join("job.json"), &json, None)
    }

    /// Forgets an ended job: its record and its state directory go, unless a savepoint lies in
    /// it (savepoints are the user's, as in Flink): then only the record goes.
    pub fn forget_job(&self, id: u64) -> Result<(), ServerError> {
        let dir = self.job_dir(id);
        let record = dir.join("job.json");
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io(&record, e)),
        }
        if !holds_savepoint(&dir) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ServerError::io(&dir, e)),
            }
        }
        Ok(())
    }

    /// Stores a module's bytes under their digest (once).
    pub fn store_module(&self, digest: &str, bytes: &[u8]) -> Result<(), ServerError> {
        let path = self.module_path(digest);
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes, None)
    }

    /// The bearer token: `given`, else the one in `<data>/token`, else a new random one
    /// written there with mode 0600.
    pub fn token(&self, given: Option<String>) -> Result<String, ServerError> {
        if let Some(token) = given {
            return Ok(token);
        }
        let path = self.root.join("token");
        match std::fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServerError::io(&path, e)),
        }
        let mut random = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
            .map_err(|e| ServerError::io(Path::new("/dev/urandom"), e))?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        write_atomically(&path, format!("{token}\n").as_bytes(), Some(0o600))?;
        Ok(token)
    }
}

/// Whether a savepoint directory lies anywhere under `dir`.
fn holds_savepoint(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        is_dir
            && (entry
                .file_name()
                .to_string_lossy()
                .starts_with("savepoint-")
                || holds_savepoint(&entry.path()))
    })
}

fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        ServerError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(dir.path()).expect("open");
        let token = data.token(None).expect("token");
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(dir.path().join("token"))
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(data.token(None).expect("again"), token);
        assert_eq!(data.token(Some("given".into())).expect("given"), "given");
    }

    #[test]
    fn the_catalog_round_trips_and_refuses_another_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(dir.path()).expect("open");
        assert_eq!(data.load_catalog().expect("empty").next_job, 1);
        let mut catalog = Catalog::default();
        catalog.tables.push(TableRecord {
            name: "t".into(),
            ddl: "CREATE TABLE t (a INT)".into(),
        });
        catalog.next_job = 7;
        data.save_catalog(&catalog).expect("save");
        let back = data.load_catalog().expect("load");
        assert_eq!(back.next_job, 7);
        assert_eq!(back.tables[0].ddl, "CREATE TABLE t (a INT)");
        std::fs::write(
            dir.path().join("catalog.json"),
            br#"{"format_version": 99, "modules": [], "tables": [], "jobs": [], "next_job": 1}"#,
        )
        .expect("write");
        let error = data.load_catalog().expect_err("format 99");
        assert!(error.to_string().contains("catalog format 99"), "{error}");
    }

    fn job(id: u64) -> JobRecord {
        JobRecord {
            id,
            name: format!("job {id}"),
            mode: "batch".into(),
            script: "INSERT INTO t SELECT 1".into(),
            statement: 0,
            query: "INSERT INTO t SELECT 1".into(),
            tables: Vec::new(),
            modules: Vec::new(),
            status: JobStatus::Finished,
            from_savepoint: None,
            savepoint: None,
            error: None,
            submitted_millis: 0,
            ended_millis: Some(1),
        }
    }

    #[test]
    fn a_format_1_catalog_moves_its_jobs_to_their_own_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(dir.path()).expect("open");
        let old = serde_json::json!({
            "format_version": 1, "modules": [], "tables": [],
            "jobs": [job(3), job(5)], "next_job": 6,
        });
        std::fs::write(dir.path().join("catalog.json"), old.to_string()).expect("write");
        let catalog = data.load_catalog().expect("migrate");
        let ids: Vec<u64> = catalog.jobs.iter().map(|j| j.id).collect();
        assert_eq!(ids, [3, 5]);
        assert!(dir.path().join("jobs/5/job.json").is_file());
        let rewritten = std::fs::read_to_string(dir.path().join("catalog.json")).expect("read");
        assert!(!rewritten.contains("\"jobs\""), "{rewritten}");
        assert!(rewritten.contains("\"format_version\": 2"), "{rewritten}");
        // And again, now from the files.
        let again = data.load_catalog().expect("load");
        assert_eq!(again.jobs.len(), 2);
        assert_eq!(again.next_job, 6);
    }

    #[test]
    fn a_job_record_without_a_catalog_entry_still_advances_the_next_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(dir.path()).expect("open");
        data.save_catalog(&Catalog::default()).expect("save");
        data.save_job(&job(9)).expect("job");
        assert_eq!(data.load_catalog().expect("load").next_job, 10);
    }

    #[test]
    fn forgetting_a_job_keeps_its_savepoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(dir.path()).expect("open");
        for id in [1, 2] {
            data.save_job(&job(id)).expect("save");
            std::fs::create_dir_all(data.job_dir(id).join("checkpoints/chk-4")).expect("chk");
        }
        std::fs::create_dir_all(data.job_dir(2).join("checkpoints/savepoint-5")).expect("sp");
        data.forget_job(1).expect("forget 1");
        data.forget_job(2).expect("forget 2");
        assert!(!data.job_dir(1).exists());
        assert!(data.job_dir(2).join("checkpoints/savepoint-5").is_dir());
        assert!(!data.job_dir(2).join("job.json").exists());
        assert!(data.load_catalog().expect("load").jobs.is_empty());
    }
}
