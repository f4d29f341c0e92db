//! The `tollgate` command line: a thin layer over the compiler and the runtime. This is the only
//! crate that does IO: it reads policy files and requests, asks the clock, and writes to the
//! streams it is given — which lets tests run every command in-process. Each command lives in its
//! own module under `commands/`; this file holds the clap definitions, the dispatch and the
//! helpers the commands share.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tollgate_compiler::diagnostic::{self, Diagnostic};
use tollgate_compiler::model::Policy;
use tollgate_compiler::request;
use tollgate_compiler::source::SourceSet;

mod commands;
mod solver;

/// Exit codes, stable for scripts and CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Clean check, all tests passed, files formatted, request allowed.
    Success = 0,
    /// Policy errors, failing tests, or files that need formatting.
    Failure = 1,
    /// Bad command line, unreadable file or malformed request.
    Usage = 2,
    /// `eval`: the request was denied.
    Denied = 3,
    /// `mcp`: the agent is revoked; the gateway ended its session and stopped the server.
    Revoked = 4,
}

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "Guardrails for AI agents that the agents do not own: write a policy, test it, prove it with Z3, compile it into a signed table, and decide and audit every tool call at a gate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ReportFormat {
    Human,
    Json,
    Sarif,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum FailOn {
    Widen,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum GraphFormat {
    Dot,
}

/// What a gate runs with: its table and keys, its audit log and state, its place.
#[derive(clap::Args, Debug)]
struct GateFlags {
    /// The compiled table to enforce
    #[arg(long)]
    table: PathBuf,
    /// The compiler's public key (checks the table's signature)
    #[arg(long)]
    compiler_key: PathBuf,
    /// The issuer's public key (checks credentials)
    #[arg(long)]
    issuer_key: PathBuf,
    /// The gate's secret key (signs audit checkpoints)
    #[arg(long)]
    gate_key: PathBuf,
    /// The audit log: appended to, never truncated, locked, continued across restarts
    #[arg(long)]
    audit: PathBuf,
    /// This host's state directory: the newest policy version accepted (older tables are
    /// refused), the revocations and the counters, which survive restarts
    #[arg(long)]
    state: PathBuf,
    /// The environment this gate runs in (required when the policy declares environments)
    #[arg(long)]
    env: Option<String>,
    /// This gate's deployment name: credentials bound to another audience are refused
    #[arg(long)]
    audience: Option<String>,
    /// Accept only the table with this policy hash (hex)
    #[arg(long)]
    pin_policy: Option<String>,
    /// Sign a checkpoint once N records are not covered by one (at the end of the batch that reaches N) and always at the end
    #[arg(long, default_value_t = tollgate_host::gate::DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: u64,
    /// When the audit log is fsynced: after every decision, within 10 ms of each write (on a thread of its own), or never
    #[arg(long, value_enum, default_value = "batch")]
    sync: Sync,
    /// Use this fixed time (Unix seconds) instead of the system clock: for tests and demos.
    /// The operator's setting; requests can never set the time
    #[arg(long)]
    fixed_clock: Option<u64>,
    /// Also write the final checkpoint here, to keep outside the log (see `audit verify --latest`)
    #[arg(long)]
    latest: Option<PathBuf>,
    /// Refuse a table compiled with `--allow-unverified`
    #[arg(long)]
    require_verified: bool,
}

/// Where `import` reads tool definitions, and how it names them.
#[derive(clap::Args, Debug)]
struct ImportFlags {
    /// Tool names become PREFIX.name (the name `tollgate mcp --prefix` and `mcp serve` use)
    #[arg(long)]
    prefix: String,
    /// The data domain of the imported tools (no schema says it: declare it with its labels)
    #[arg(long)]
    domain: String,
    /// Write the declarations here instead of standard output
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ImportSource {
    /// From a saved MCP `tools/list` result, or from a server started after `--`
    Mcp {
        /// A saved `tools/list` result (JSON)
        file: Option<PathBuf>,
        #[command(flatten)]
        flags: ImportFlags,
        /// The MCP server to start over stdio and ask for its tools, after `--`
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// From OpenAI function-calling tool definitions (JSON)
    Openai {
        /// The tool definitions
        file: PathBuf,
        #[command(flatten)]
        flags: ImportFlags,
    },
}

#[derive(Subcommand, Debug)]
enum McpCommand {
    /// Serve agents over Streamable HTTP, in front of several MCP servers
    ///
    /// One gateway, many agents: each HTTP request carries its agent's credential as
    /// `Authorization: Bearer <credential>`, and is decided for that agent (its tools, limits and
    /// revocation). Tools are named `NAME.tool` after their upstream. A request without a usable
    /// credential gets 401, a revoked agent 403
    Serve {
        #[command(flatten)]
        gate: GateFlags,
        /// Where to listen (loopback unless the gateway sits behind your own TLS proxy); port 0
        /// picks a free port, which is printed
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: std::net::SocketAddr,
        /// An upstream MCP server: NAME=COMMAND (run by `sh -c`, over stdio) or
        /// NAME=http://HOST:PORT/PATH (Streamable HTTP, plain http); repeat for several
        #[arg(long = "upstream", value_name = "NAME=COMMAND|URL", required = true)]
        upstreams: Vec<tollgate_gateway::http::UpstreamSpec>,
        /// Answer a denied call with a tool result marked `isError`, or with a JSON-RPC error
        #[arg(long, value_enum, default_value = "result")]
        deny_as: DenyAsFlag,
        /// Also pass this MCP method (or a family, `resources/*`) to the upstreams; resources,
        /// prompts and completion are refused by default, as is anything unknown
        #[arg(long = "allow-method", value_name = "METHOD")]
        allow_methods: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum DenyAsFlag {
    Result,
    Error,
}

impl From<DenyAsFlag> for tollgate_gateway::DenyAs {
    fn from(flag: DenyAsFlag) -> tollgate_gateway::DenyAs {
        match flag {
            DenyAsFlag::Result => tollgate_gateway::DenyAs::Result,
            DenyAsFlag::Error => tollgate_gateway::DenyAs::Error,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Sync {
    Every,
    Batch,
    None,
}

impl GateFlags {
    fn into_args(self) -> commands::gate::GateArgs {
        commands::gate::GateArgs {
            table: self.table,
            compiler_key: self.compiler_key,
            issuer_key: self.issuer_key,
            gate_key: self.gate_key,
            audit: self.audit,
            state: self.state,
            env: self.env,
            audience: self.audience,
            pin_policy: self.pin_policy,
            checkpoint_every: self.checkpoint_every,
            fixed_clock: self.fixed_clock,
            latest: self.latest,
            require_verified: self.require_verified,
            sync: match self.sync {
                Sync::Every => tollgate_host::audit_log::SyncPolicy::Every,
                Sync::Batch => tollgate_host::audit_log::SyncPolicy::Batch,
                Sync::None => tollgate_host::audit_log::SyncPolicy::None,
            },
        }
    }
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain, the Merkle tree and every checkpoint signature
    Verify {
        /// The audit log
        log: PathBuf,
        /// The gate's public key
        #[arg(long)]
        key: PathBuf,
        /// The name the gate's key signs checkpoints under
        #[arg(long, default_value = GATE_KEY_NAME)]
        key_name: String,
        /// The latest checkpoint, kept outside the gate: also detects a log cut after an earlier one
        #[arg(long)]
        latest: Option<PathBuf>,
    },
    /// Print the records as JSON lines
    Show {
        /// The audit log
        log: PathBuf,
    },
    /// Set a torn last entry (from a crash mid-write) aside in a file of its own, cut the log
    /// there, and append a record that says so
    Recover {
        /// The audit log
        log: PathBuf,
    },
}

pub(crate) const GATE_KEY_NAME: &str = "tollgate-gate";

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one command line parsed once per process: size does not matter"
)]
enum Command {
    #[command(display_order = 5)]
    /// Prove properties of a policy with Z3: conflicts, dead and redundant rules, assertions,
    /// escalation paths and the lethal trifecta, each finding with a witness request
    Verify {
        /// The policy: a .toll file, or a directory searched recursively for them
        path: PathBuf,
        /// Output: rendered diagnostics, JSON, or SARIF 2.1.0 for code-scanning tools
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
        /// Milliseconds per solver call; a call that runs out is reported as inconclusive
        #[arg(long, default_value_t = 10_000)]
        timeout: u32,
    },
    #[command(display_order = 6)]
    /// Compare two versions of a policy: what each agent may newly do, or no longer do, with each
    /// tool, with witnesses. A side is a path, or REV:PATH to read it from git
    Diff {
        /// The old version: a path, or REV:PATH to read it from git (e.g. `main:policies`)
        old: String,
        /// The new version: a path, or REV:PATH
        new: String,
        /// Output: rendered diagnostics, JSON, or SARIF 2.1.0 for code-scanning tools
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
        /// `widen`: exit 1 when the new version allows more without an `acknowledge widening`
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
        /// Milliseconds per solver call; a call that runs out is reported as inconclusive
        #[arg(long, default_value_t = 10_000)]
        timeout: u32,
    },
    #[command(display_order = 9)]
    /// Make an Ed25519 key pair: NAME.key (secret, PKCS#8 PEM, mode 0600) and NAME.pub (SPKI PEM)
    Keygen {
        /// Path of the pair without extension, e.g. `keys/issuer`
        name: PathBuf,
        /// Replace existing key files (never done without it)
        #[arg(long)]
        force: bool,
    },
    #[command(display_order = 8)]
    /// Compile a policy into a signed decision table
    Compile {
        /// The policy: a .toll file or a directory of them
        path: PathBuf,
        /// Where to write the table
        #[arg(short, long)]
        output: PathBuf,
        /// The compiler's secret key (`NAME.key` from `tollgate keygen`)
        #[arg(long)]
        key: PathBuf,
        /// The policy's version: a number you raise with every release; gates refuse a table
        /// older than the newest they have accepted
        #[arg(long, default_value_t = 0)]
        policy_version: u64,
        /// Compile even if the policy's tests fail or `verify` reports errors; the table then
        /// carries no verified flag, and `gate --require-verified` refuses it
        #[arg(long)]
        allow_unverified: bool,
        /// Print table statistics and the translation-validation proof time
        #[arg(long)]
        verbose: bool,
    },
    #[command(display_order = 10)]
    /// Issue a short-lived credential for an agent of a compiled table
    Issue {
        /// The compiled table the credential is for
        #[arg(long)]
        table: PathBuf,
        /// The agent that will hold the credential
        #[arg(long)]
        agent: String,
        /// Delegated work: the agents that delegated, origin first (repeat the flag); every hop
        /// must be a declared `delegate` edge
        #[arg(long)]
        via: Vec<String>,
        /// Lifetime, e.g. 10m; at most the `credential_ttl` of every agent on the chain (1h where
        /// the policy names none)
        #[arg(long)]
        ttl: String,
        /// Tools the credential may call (names, or prefixes like `crm.*`); default: all
        #[arg(long, num_args = 1..)]
        scope: Vec<String>,
        /// Bind the credential to one environment: gates running elsewhere refuse it
        #[arg(long)]
        env: Option<String>,
        /// Bind the credential to one gate deployment (a gate's `--audience`)
        #[arg(long)]
        audience: Option<String>,
        /// A gate's state directory: refuse to issue for an agent it has revoked
        #[arg(long)]
        state: Option<PathBuf>,
        /// The issuer's secret key
        #[arg(long)]
        key: PathBuf,
        /// Issue time (Unix seconds); default: now
        #[arg(long)]
        time: Option<u64>,
        /// Where to write the credential (base64)
        #[arg(short, long)]
        output: PathBuf,
    },
    #[command(display_order = 11)]
    /// Run the gate: JSON lines in, one decision out per line, every decision audited
    ///
    /// Each request line is {"credential", "tool", "args", "id"}; its decision line is flushed
    /// before the next line is read, and every decision goes into the signed audit log. Time,
    /// environment and the delegation chain come from this host and the credential, never from
    /// the request: a line that carries them is denied (`untrusted_field`)
    Gate {
        #[command(flatten)]
        gate: GateFlags,
    },
    #[command(display_order = 11)]
    /// Write tool declarations from the tools' own schemas: MCP `tools/list`, OpenAI functions
    ///
    /// Arguments are typed from the JSON Schema and the effect taken from MCP tool annotations;
    /// the data domain is yours to name (`--domain`) and declare. Every schema construct the
    /// language cannot express yet is reported, one by one, never dropped
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    #[command(display_order = 11)]
    /// Put MCP servers behind the gate: over stdio in place of a server, or `mcp serve` over HTTP
    ///
    /// The agent's host (Claude Desktop, Cursor, an agent SDK) starts this instead of the MCP
    /// server; it starts the server (`-- COMMAND…`) as its child and relays. `tools/list` shows
    /// only the tools the credential's agent could ever be allowed; every `tools/call` is decided
    /// and audited before it is forwarded; a denial is answered here. When the agent is revoked
    /// the session ends: the server is stopped and the gateway exits with status 4
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Mcp {
        #[command(subcommand)]
        serve: Option<McpCommand>,
        #[command(flatten)]
        gate: Option<GateFlags>,
        /// The agent's credential (the file `tollgate issue` writes): whose calls these are
        #[arg(long, required = true)]
        credential: Option<PathBuf>,
        /// The policy names this server's tools `PREFIX.tool` (as `tollgate import --prefix`)
        #[arg(long)]
        prefix: Option<String>,
        /// Answer a denied call with a tool result marked `isError` (the model reads why), or
        /// with a JSON-RPC error
        #[arg(long, value_enum, default_value = "result")]
        deny_as: DenyAsFlag,
        /// Also pass this MCP method (or a family, `resources/*`); resources, prompts, sampling,
        /// elicitation and roots are refused by default, as is anything unknown
        #[arg(long = "allow-method", value_name = "METHOD")]
        allow_methods: Vec<String>,
        /// The largest message, in bytes, relayed either way; a larger one is refused or dropped
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        max_message: usize,
        /// The MCP server to start, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    #[command(display_order = 12)]
    /// Revoke an agent by hand, durably and audited
    ///
    /// The revocation is recorded in the state directory and in the audit log, holds at once and
    /// after every restart, and the issuer refuses the agent from then on
    Revoke {
        /// The agent to revoke
        #[arg(long)]
        agent: String,
        /// Why, for the record
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        gate: GateFlags,
    },
    #[command(display_order = 13)]
    /// List the agents a gate's state directory holds as revoked
    Revocations {
        /// The gate's state directory
        #[arg(long)]
        state: PathBuf,
    },
    #[command(display_order = 14)]
    /// Audit logs: verify their chain and checkpoints, or show their records
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    #[command(display_order = 7)]
    /// Print the escalation graph (agents, tools, roles; escalation paths in red)
    Graph {
        /// The policy: a .toll file, or a directory searched recursively for them
        path: PathBuf,
        /// Output format (Graphviz dot)
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        /// Milliseconds per solver call; a call that runs out is reported as inconclusive
        #[arg(long, default_value_t = 10_000)]
        timeout: u32,
    },
    #[command(display_order = 1)]
    /// Parse and check a policy set (a .toll file or a directory of them)
    Check {
        /// The policy: a .toll file, or a directory searched recursively for them
        path: PathBuf,
        /// Output: for people, or JSON for tools
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    #[command(display_order = 4)]
    /// Decide requests given as JSON (one object, or an array decided in order with shared state)
    Eval {
        /// The policy: a .toll file, or a directory searched recursively for them
        path: PathBuf,
        /// File with the request(s), or `-` for standard input
        #[arg(long)]
        request: String,
        /// Time (seconds since the Unix epoch) for requests that give none; default: now
        #[arg(long)]
        time: Option<u64>,
        /// Output: for people, or JSON for tools
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    #[command(display_order = 3)]
    /// Run the policy's `test` blocks
    Test {
        /// The policy: a .toll file, or a directory searched recursively for them
        path: PathBuf,
        /// Output: for people, or JSON for tools
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    #[command(display_order = 2)]
    /// Format policy files canonically, in place
    Fmt {
        /// The policy: a .toll file, or a directory searched recursively for them
        path: PathBuf,
        /// Change nothing; fail if a file is not formatted
        #[arg(long)]
        check: bool,
    },
}

/// Runs the real process.
pub fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(exit) = solver::isolate(&args) {
        return exit;
    }
    // Not locked for the whole run: `mcp` reads and writes them on threads of its own.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let exit = run(&args, Box::new(std::io::stdin()), &mut stdout, &mut stderr);
    std::process::ExitCode::from(exit as u8)
}

/// Runs one command line against the given streams (standard input is owned: `gate` reads it on
/// a thread of its own).
pub fn run(
    args: &[String],
    stdin: Box<dyn Read + Send>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let is_help = matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            let text = error.render().to_string();
            if is_help {
                let _ = write!(stdout, "{text}");
                return Exit::Success;
            }
            let _ = write!(stderr, "{text}");
            return Exit::Usage;
        }
    };
    let mut io = Io {
        stdin,
        stdout,
        stderr,
    };
    match cli.command {
        Command::Check { path, format } => commands::check::run(&mut io, &path, format),
        Command::Eval {
            path,
            request,
            time,
            format,
        } => commands::eval::run(&mut io, &path, &request, time, format),
        Command::Test { path, format } => commands::test::run(&mut io, &path, format),
        Command::Verify {
            path,
            format,
            timeout,
        } => commands::verify::run(&mut io, &path, format, timeout),
        Command::Graph { path, timeout, .. } => commands::graph::run(&mut io, &path, timeout),
        Command::Keygen { name, force } => commands::keygen::run(&mut io, &name, force),
        Command::Compile {
            path,
            output,
            key,
            policy_version,
            allow_unverified,
            verbose,
        } => commands::compile::run(
            &mut io,
            &path,
            &output,
            &key,
            policy_version,
            allow_unverified,
            verbose,
        ),
        Command::Issue {
            table,
            agent,
            via,
            ttl,
            scope,
            env,
            audience,
            state,
            key,
            time,
            output,
        } => commands::issue::run(
            &mut io,
            &commands::issue::IssueOptions {
                table,
                agent,
                via,
                ttl,
                scope,
                env,
                audience,
                state,
                key,
                time,
                output,
            },
        ),
        Command::Gate { gate } => commands::gate::run(&mut io, &gate.into_args()),
        Command::Import { source } => {
            let (source, file, command, flags) = match source {
                ImportSource::Mcp {
                    file,
                    flags,
                    command,
                } => (tollgate_compiler::import::Source::Mcp, file, command, flags),
                ImportSource::Openai { file, flags } => (
                    tollgate_compiler::import::Source::OpenAi,
                    Some(file),
                    Vec::new(),
                    flags,
                ),
            };
            commands::import::run(
                &mut io,
                &commands::import::ImportArgs {
                    source,
                    file,
                    command,
                    prefix: flags.prefix,
                    domain: flags.domain,
                    output: flags.output,
                },
            )
        }
        Command::Mcp {
            serve:
                Some(McpCommand::Serve {
                    gate,
                    listen,
                    upstreams,
                    deny_as,
                    allow_methods,
                }),
            ..
        } => commands::mcp::serve(
            &mut io,
            &gate.into_args(),
            tollgate_gateway::http::HttpOptions {
                listen,
                upstreams,
                deny_as: deny_as.into(),
                allow_methods,
            },
        ),
        Command::Mcp {
            serve: None,
            gate: Some(gate),
            credential: Some(credential),
            prefix,
            deny_as,
            allow_methods,
            max_message,
            command,
        } => commands::mcp::run(
            &mut io,
            &gate.into_args(),
            commands::mcp::McpArgs {
                credential,
                prefix,
                deny_as: deny_as.into(),
                allow_methods,
                max_message,
                command,
            },
        ),
        Command::Mcp { .. } => io.usage(
            "`tollgate mcp` needs the gate's flags, `--credential` and `-- COMMAND…`, or `serve`",
        ),
        Command::Revoke {
            agent,
            reason,
            gate,
        } => commands::revoke::revoke(&mut io, &gate.into_args(), &agent, &reason),
        Command::Revocations { state } => commands::revoke::list(&mut io, &state),
        Command::Audit {
            command: AuditCommand::Recover { log },
        } => commands::audit::recover(&mut io, &log),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    log,
                    key,
                    key_name,
                    latest,
                },
        } => commands::audit::verify(&mut io, &log, &key, &key_name, latest.as_deref()),
        Command::Audit {
            command: AuditCommand::Show { log },
        } => commands::audit::show(&mut io, &log),
        Command::Diff {
            old,
            new,
            format,
            fail_on,
            timeout,
        } => commands::diff::run(&mut io, &old, &new, format, fail_on, timeout),
        Command::Fmt { path, check } => commands::fmt::run(&mut io, &path, check),
    }
}

pub(crate) struct Io<'a> {
    pub(crate) stdin: Box<dyn Read + Send>,
    pub(crate) stdout: &'a mut dyn Write,
    pub(crate) stderr: &'a mut dyn Write,
}

impl Io<'_> {
    pub(crate) fn out(&mut self, text: &str) {
        let _ = self.stdout.write_all(text.as_bytes());
    }

    pub(crate) fn err(&mut self, text: &str) {
        let _ = self.stderr.write_all(text.as_bytes());
    }

    pub(crate) fn usage(&mut self, message: &str) -> Exit {
        self.err(&format!("error: {message}\n"));
        Exit::Usage
    }
}

/// The `.toll` files at a path: the file itself, or every `.toll` file below a directory, sorted.
pub(crate) fn policy_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if metadata.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let entries = std::fs::read_dir(&directory)
            .map_err(|e| format!("cannot read `{}`: {e}", directory.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read `{}`: {e}", directory.display()))?;
            let entry_path = entry.path();
            if entry_path.is_dir() {
                pending.push(entry_path);
            } else if entry_path.extension().is_some_and(|ext| ext == "toll") {
                found.push(entry_path);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(format!("no `.toll` files under `{}`", path.display()));
    }
    Ok(found)
}

pub(crate) fn read_sources(path: &Path) -> Result<SourceSet, String> {
    let mut sources = SourceSet::new();
    for file in policy_files(path)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        sources.add(&file.display().to_string(), &text);
    }
    Ok(sources)
}

pub(crate) fn report(
    io: &mut Io<'_>,
    diagnostics: &[Diagnostic],
    sources: &SourceSet,
    format: Format,
) {
    match format {
        Format::Human => io.err(&diagnostic::render_human(diagnostics, sources)),
        Format::Json => {
            let json = diagnostic::render_json(diagnostics, sources);
            io.out(&format!("{json:#}\n"));
        }
    }
}

/// Loads and checks; on errors, reports them and returns the exit code to use.
pub(crate) fn load(
    io: &mut Io<'_>,
    path: &Path,
    format: Format,
) -> Result<(Policy, SourceSet), Exit> {
    let sources = read_sources(path).map_err(|message| io.usage(&message))?;
    match tollgate_compiler::load(&sources) {
        Ok(policy) => Ok((policy, sources)),
        Err(diagnostics) => {
            report(io, &diagnostics, &sources, format);
            if format == Format::Human {
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                io.err(&format!(
                    "error: {} has {errors} error{}\n",
                    path.display(),
                    plural(errors)
                ));
            }
            Err(Exit::Failure)
        }
    }
}

pub(crate) fn count(number: usize, noun: &str) -> String {
    format!("{number} {noun}{}", plural(number))
}

pub(crate) fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// A measured time as a person reads it: `2.31s`, `14.20ms`, `870.00µs`.
pub(crate) fn elapsed(time: std::time::Duration) -> String {
    let seconds = time.as_secs_f64();
    if seconds >= 1.0 {
        format!("{seconds:.2}s")
    } else if seconds >= 0.001 {
        format!("{:.2}ms", seconds * 1e3)
    } else {
        format!("{:.2}µs", seconds * 1e6)
    }
}

pub(crate) fn location(sources: &SourceSet, span: tollgate_grammar::Span) -> String {
    let (line, column) = sources.line_column(span);
    let path = sources
        .file(span.file)
        .map_or("<unknown>", |f| f.path.as_str());
    format!("{path}:{line}:{column}")
}

pub(crate) fn verify_options(timeout: u32) -> tollgate_compiler::verify::Options {
    tollgate_compiler::verify::Options {
        timeout_ms: timeout,
        ..tollgate_compiler::verify::Options::default()
    }
}

pub(crate) fn witness_json(witness: &tollgate_compiler::verify::Witness) -> serde_json::Value {
    let mut value = serde_json::json!({
        "label": witness.label,
        "request": request::to_json(&witness.request),
    });
    if let (Some(role), Some(object)) = (&witness.granted_role, value.as_object_mut()) {
        object.insert("after_granting_role".to_owned(), serde_json::json!(role));
    }
    value
}

/// Findings as a person reads them: each diagnostic, then its witnesses as replayable JSON.
pub(crate) fn render_findings(
    findings: &[tollgate_compiler::verify::Finding],
    sources: &SourceSet,
) -> String {
    let mut out = String::new();
    for finding in findings {
        let rendered = diagnostic::render_human(std::slice::from_ref(&finding.diagnostic), sources);
        out.push_str(rendered.trim_end());
        out.push('\n');
        for witness in &finding.witnesses {
            let role = witness
                .granted_role
                .as_ref()
                .map_or(String::new(), |r| format!(", after granting role `{r}`"));
            out.push_str(&format!(
                "  witness ({}{role}):\n    {}\n",
                witness.label,
                request::to_json(&witness.request)
            ));
        }
        out.push('\n');
    }
    out
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds with their UTC date, e.g. `1767225600 (2026-01-01 00:00:00 UTC)`.
pub(crate) fn when(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{seconds} ({year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC)",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let lexed = tollgate_grammar::lexer::lex(text, tollgate_grammar::FileId(0));
    match (lexed.errors.is_empty(), lexed.tokens.as_slice()) {
        (true, [(_, tollgate_grammar::lexer::Tok::Duration(seconds), _)]) => Some(*seconds),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    /// A newcomer reads `--help`: every argument and flag of every command says what it is.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "tollgate", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn elapsed_times_read_in_their_unit() {
        use std::time::Duration;
        assert_eq!(super::elapsed(Duration::from_millis(2_310)), "2.31s");
        assert_eq!(super::elapsed(Duration::from_micros(14_200)), "14.20ms");
        assert_eq!(super::elapsed(Duration::from_nanos(870_000)), "870.00µs");
    }
}
