//! The `tollgate` command line. This is the only module that does IO: it reads policy files and
//! requests, asks the clock, and writes to the streams it is given — which lets tests run every
//! command in-process.

use crate::diagnostic::{self, Diagnostic};
use crate::eval::{self, Decision, State};
use crate::model::{Policy, RuleEffect};
use crate::request;
use crate::source::SourceSet;
use crate::testing;
use base64::Engine as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod gate;
mod keys;

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
}

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "Guardrails for AI agents: check, test and evaluate Tollgate policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ReportFormat {
    Human,
    Json,
    Sarif,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum FailOn {
    Widen,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum GraphFormat {
    Dot,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain, the Merkle tree and every checkpoint signature
    Verify {
        log: PathBuf,
        /// The gate's public key
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = GATE_KEY_NAME)]
        key_name: String,
        /// The latest checkpoint, kept outside the gate: also detects a log cut after an earlier one
        #[arg(long)]
        latest: Option<PathBuf>,
    },
    /// Print the records as JSON lines
    Show { log: PathBuf },
}

const GATE_KEY_NAME: &str = "tollgate-gate";

#[derive(Subcommand, Debug)]
enum Command {
    /// Prove properties of a policy with Z3: conflicts, dead and redundant rules, assertions,
    /// escalation paths and the lethal trifecta, each finding with a witness request
    Verify {
        path: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
        /// Milliseconds per solver call; a call that runs out is reported as inconclusive
        #[arg(long, default_value_t = 10_000)]
        timeout: u32,
    },
    /// Compare two versions of a policy: what each agent may newly do, or no longer do, with each
    /// tool, with witnesses. A side is a path, or REV:PATH to read it from git
    Diff {
        old: String,
        new: String,
        #[arg(long, value_enum, default_value = "human")]
        format: ReportFormat,
        /// `widen`: exit 1 when the new version allows more without an `acknowledge widening`
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
        #[arg(long, default_value_t = 10_000)]
        timeout: u32,
    },
    /// Make an Ed25519 key pair: NAME.key (secret, PKCS#8 PEM, mode 0600) and NAME.pub (SPKI PEM)
    Keygen {
        /// Path of the pair without extension, e.g. `keys/issuer`
        name: PathBuf,
        /// Replace existing key files (never done without it)
        #[arg(long)]
        force: bool,
    },
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
        /// Print table statistics and the translation-validation proof time
        #[arg(long)]
        verbose: bool,
    },
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
    /// Run the gate: JSON lines in, one decision out per line, every decision audited
    ///
    /// Each request line is {"credential", "tool", "args", "id"}; its decision line is flushed
    /// before the next line is read, and every decision goes into the signed audit log. Time,
    /// environment and the delegation chain come from this host and the credential, never from
    /// the request: a line that carries them is denied (`untrusted_field`)
    Gate {
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
        /// The audit log to write
        #[arg(long)]
        audit: PathBuf,
        /// This host's state directory: the newest policy version accepted (older tables are
        /// refused) and the revocations, which survive restarts
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
        /// Sign a checkpoint every N records (and always at the end)
        #[arg(long, default_value_t = 100)]
        checkpoint_every: u64,
        /// Use this fixed time (Unix seconds) instead of the system clock: for tests and demos.
        /// The operator's setting; requests can never set the time
        #[arg(long)]
        fixed_clock: Option<u64>,
        /// Also write the final checkpoint here, to keep outside the log (see `audit verify --latest`)
        #[arg(long)]
        latest: Option<PathBuf>,
    },
    /// Audit logs: verify their chain and checkpoints, or show their records
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the escalation graph (agents, tools, roles; escalation paths in red)
    Graph {
        path: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        #[arg(long, default_value_t = 10_000)]
        timeout: u32,
    },
    /// Parse and check a policy set (a .toll file or a directory of them)
    Check {
        path: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Decide requests given as JSON (one object, or an array decided in order with shared state)
    Eval {
        path: PathBuf,
        /// File with the request(s), or `-` for standard input
        #[arg(long)]
        request: String,
        /// Time (seconds since the Unix epoch) for requests that give none; default: now
        #[arg(long)]
        time: Option<u64>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Run the policy's `test` blocks
    Test {
        path: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Format policy files canonically, in place
    Fmt {
        path: PathBuf,
        /// Change nothing; fail if a file is not formatted
        #[arg(long)]
        check: bool,
    },
}

/// Runs the real process.
pub fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let exit = run(&args, &mut stdin, &mut stdout, &mut stderr);
    std::process::ExitCode::from(exit as u8)
}

/// Runs one command line against the given streams.
pub fn run(
    args: &[String],
    stdin: &mut dyn Read,
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
        Command::Check { path, format } => check(&mut io, &path, format),
        Command::Eval {
            path,
            request,
            time,
            format,
        } => evaluate(&mut io, &path, &request, time, format),
        Command::Test { path, format } => test(&mut io, &path, format),
        Command::Verify {
            path,
            format,
            timeout,
        } => verify(&mut io, &path, format, timeout),
        Command::Graph { path, timeout, .. } => graph(&mut io, &path, timeout),
        Command::Keygen { name, force } => keygen(&mut io, &name, force),
        Command::Compile {
            path,
            output,
            key,
            policy_version,
            verbose,
        } => compile(&mut io, &path, &output, &key, policy_version, verbose),
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
        } => issue(
            &mut io,
            &IssueOptions {
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
        Command::Gate {
            table,
            compiler_key,
            issuer_key,
            gate_key,
            audit,
            state,
            env,
            audience,
            pin_policy,
            checkpoint_every,
            fixed_clock,
            latest,
        } => gate::run(
            &mut io,
            &gate::GateOptions {
                table,
                compiler_key,
                issuer_key,
                gate_key,
                audit,
                state,
                env,
                audience,
                pin_policy,
                checkpoint_every,
                fixed_clock,
                latest,
            },
        ),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    log,
                    key,
                    key_name,
                    latest,
                },
        } => audit_verify(&mut io, &log, &key, &key_name, latest.as_deref()),
        Command::Audit {
            command: AuditCommand::Show { log },
        } => audit_show(&mut io, &log),
        Command::Diff {
            old,
            new,
            format,
            fail_on,
            timeout,
        } => diff(&mut io, &old, &new, format, fail_on, timeout),
        Command::Fmt { path, check } => fmt(&mut io, &path, check),
    }
}

struct Io<'a> {
    stdin: &'a mut dyn Read,
    stdout: &'a mut dyn Write,
    stderr: &'a mut dyn Write,
}

impl Io<'_> {
    fn out(&mut self, text: &str) {
        let _ = self.stdout.write_all(text.as_bytes());
    }

    fn err(&mut self, text: &str) {
        let _ = self.stderr.write_all(text.as_bytes());
    }

    fn usage(&mut self, message: &str) -> Exit {
        self.err(&format!("error: {message}\n"));
        Exit::Usage
    }
}

/// The `.toll` files at a path: the file itself, or every `.toll` file below a directory, sorted.
fn policy_files(path: &Path) -> Result<Vec<PathBuf>, String> {
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

fn read_sources(path: &Path) -> Result<SourceSet, String> {
    let mut sources = SourceSet::new();
    for file in policy_files(path)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        sources.add(&file.display().to_string(), &text);
    }
    Ok(sources)
}

fn report(io: &mut Io<'_>, diagnostics: &[Diagnostic], sources: &SourceSet, format: Format) {
    match format {
        Format::Human => io.err(&diagnostic::render_human(diagnostics, sources)),
        Format::Json => {
            let json = diagnostic::render_json(diagnostics, sources);
            io.out(&format!("{json:#}\n"));
        }
    }
}

/// Loads and checks; on errors, reports them and returns the exit code to use.
fn load(io: &mut Io<'_>, path: &Path, format: Format) -> Result<(Policy, SourceSet), Exit> {
    let sources = read_sources(path).map_err(|message| io.usage(&message))?;
    match crate::load(&sources) {
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

fn count(number: usize, noun: &str) -> String {
    format!("{number} {noun}{}", plural(number))
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

fn check(io: &mut Io<'_>, path: &Path, format: Format) -> Exit {
    let (policy, sources) = match load(io, path, format) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    match format {
        Format::Json => report(io, &[], &sources, format),
        Format::Human => {
            let counts = [
                count(sources.files.len(), "file"),
                count(policy.agents.len(), "agent"),
                count(policy.tools.len(), "tool"),
                count(policy.rules.len(), "rule"),
                count(policy.limits.len(), "limit"),
                count(policy.assertions.len(), "assertion"),
                count(policy.tests.len(), "test"),
            ];
            io.out(&format!("ok: {}\n", counts.join(", ")));
        }
    }
    Exit::Success
}

fn location(sources: &SourceSet, span: tollgate_grammar::Span) -> String {
    let (line, column) = sources.line_column(span);
    let path = sources
        .file(span.file)
        .map_or("<unknown>", |f| f.path.as_str());
    format!("{path}:{line}:{column}")
}

fn evaluate(
    io: &mut Io<'_>,
    path: &Path,
    request_path: &str,
    time: Option<u64>,
    format: Format,
) -> Exit {
    let (policy, sources) = match load(io, path, format) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let mut text = String::new();
    let read = if request_path == "-" {
        io.stdin.read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(request_path).map(|t| text = t)
    };
    if let Err(error) = read {
        return io.usage(&format!("cannot read `{request_path}`: {error}"));
    }
    let json: serde_json::Value = match request::parse_strict(&text) {
        Ok(json) => json,
        Err(error) => return io.usage(&format!("`{request_path}` is not JSON: {error}")),
    };
    let now = time.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let list = match json {
        serde_json::Value::Array(items) => items,
        single => vec![single],
    };
    let mut requests = Vec::new();
    for (index, item) in list.into_iter().enumerate() {
        match request::from_json(item, now) {
            Ok(request) => requests.push(request),
            Err(error) => {
                return io.usage(&format!(
                    "request {} in `{request_path}`: {error}",
                    index + 1
                ))
            }
        }
    }
    let mut state = State::new();
    let mut all_allowed = true;
    let mut json_out = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let decision = eval::decide(&policy, request, &mut state);
        all_allowed &= decision.is_allow();
        match format {
            Format::Human => {
                if requests.len() > 1 {
                    io.out(&format!("request {}: ", index + 1));
                }
                io.out(&explain(&policy, &sources, request, &decision));
            }
            Format::Json => json_out.push(decision_json(&policy, &sources, request, &decision)),
        }
    }
    if format == Format::Json {
        let value = if json_out.len() == 1 {
            json_out.remove(0)
        } else {
            serde_json::Value::Array(json_out)
        };
        io.out(&format!("{value:#}\n"));
    }
    if all_allowed {
        Exit::Success
    } else {
        Exit::Denied
    }
}

/// A decision as a person reads it: the verdict, then why.
fn explain(
    policy: &Policy,
    sources: &SourceSet,
    request: &crate::model::Request,
    decision: &Decision,
) -> String {
    let mut out = format!("{}\n", testing::describe_decision(policy, decision));
    let chain = if request.via.is_empty() {
        String::new()
    } else {
        format!(" via [{}]", request.via.join(", "))
    };
    out.push_str(&format!(
        "  request: {}{chain} calls {}\n",
        request.agent, request.tool
    ));
    if let Some(agent) = &decision.denied_agent {
        if *agent != request.agent {
            out.push_str(&format!(
                "  denied for: {agent} (a delegator on the chain)\n"
            ));
        }
    }
    if let Some(detail) = &decision.detail {
        out.push_str(&format!("  because: {detail}\n"));
    }
    if let Some(limit) = decision.limit.and_then(|id| policy.limits.get(id)) {
        out.push_str(&format!(
            "  limit: {} at {}\n",
            sources.snippet(limit.span),
            location(sources, limit.span)
        ));
    }
    if decision.revoked_agent {
        out.push_str(&format!(
            "  revoked: this denial revoked `{}`\n",
            request.agent
        ));
    }
    if !decision.trace.is_empty() {
        out.push_str("  rules:\n");
    }
    for entry in &decision.trace {
        let Some(rule) = policy.rules.get(entry.rule) else {
            continue;
        };
        let effect = match rule.effect {
            RuleEffect::Permit => "permit",
            RuleEffect::Forbid => "forbid",
        };
        let status = if entry.applies {
            "applies".to_owned()
        } else {
            match entry.failed {
                Some(span) => format!("does not apply: `{}` is false", sources.snippet(span)),
                None => "does not apply".to_owned(),
            }
        };
        out.push_str(&format!(
            "    {effect} {} ({}) for {}: {status}\n",
            policy.rule_name(entry.rule),
            location(sources, rule.span),
            entry.agent
        ));
    }
    if decision.trace.is_empty() && decision.reason == Some(crate::model::Reason::NotPermitted) {
        out.push_str("  rules: none matches this agent and tool\n");
    }
    out
}

fn decision_json(
    policy: &Policy,
    sources: &SourceSet,
    request: &crate::model::Request,
    decision: &Decision,
) -> serde_json::Value {
    let trace: Vec<serde_json::Value> = decision
        .trace
        .iter()
        .map(|entry| {
            serde_json::json!({
                "agent": entry.agent,
                "rule": policy.rule_name(entry.rule),
                "applies": entry.applies,
                "failed": entry.failed.map(|span| sources.snippet(span).to_owned()),
            })
        })
        .collect();
    serde_json::json!({
        "request": request::to_json(request),
        "verdict": decision.verdict.as_str(),
        "reason": decision.reason.map(|r| r.as_str()),
        "rule": decision.rule.map(|r| policy.rule_name(r)),
        "denied_agent": decision.denied_agent,
        "detail": decision.detail,
        "revoked_agent": decision.revoked_agent,
        "trace": trace,
    })
}

fn verify_options(timeout: u32) -> crate::verify::Options {
    crate::verify::Options {
        timeout_ms: timeout,
        ..crate::verify::Options::default()
    }
}

fn witness_json(witness: &crate::verify::Witness) -> serde_json::Value {
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
fn render_findings(findings: &[crate::verify::Finding], sources: &SourceSet) -> String {
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

fn verify(io: &mut Io<'_>, path: &Path, format: ReportFormat, timeout: u32) -> Exit {
    let plain = if format == ReportFormat::Human {
        Format::Human
    } else {
        Format::Json
    };
    let (policy, sources) = match load(io, path, plain) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let started = std::time::Instant::now();
    let report = crate::verify::verify(&policy, &verify_options(timeout));
    let elapsed = started.elapsed();
    let count = |severity: diagnostic::Severity| {
        report
            .findings
            .iter()
            .filter(|f| f.diagnostic.severity == severity)
            .count()
    };
    let (errors, warnings, notes) = (
        count(diagnostic::Severity::Error),
        count(diagnostic::Severity::Warning),
        count(diagnostic::Severity::Note),
    );
    match format {
        ReportFormat::Human => {
            io.out(&render_findings(&report.findings, &sources));
            for name in &report.proved {
                io.out(&format!("proved: {name}\n"));
            }
            io.out(&format!(
                "verify: {} error{}, {} warning{}, {} note{}; {} assertion{} proved; {} buckets, {} solver queries, {} unknown\n",
                errors,
                plural(errors),
                warnings,
                plural(warnings),
                notes,
                plural(notes),
                report.proved.len(),
                plural(report.proved.len()),
                report.stats.buckets,
                report.stats.queries,
                report.stats.unknown,
            ));
            io.err(&format!("verified in {:.2?}\n", elapsed));
        }
        ReportFormat::Json => {
            let diagnostics: Vec<Diagnostic> = report
                .findings
                .iter()
                .map(|f| f.diagnostic.clone())
                .collect();
            let mut json = diagnostic::render_json(&diagnostics, &sources);
            if let Some(list) = json.get_mut("diagnostics").and_then(|d| d.as_array_mut()) {
                for (entry, finding) in list.iter_mut().zip(&report.findings) {
                    if let Some(object) = entry.as_object_mut() {
                        let witnesses: Vec<serde_json::Value> =
                            finding.witnesses.iter().map(witness_json).collect();
                        object.insert("witnesses".to_owned(), serde_json::json!(witnesses));
                    }
                }
            }
            if let Some(object) = json.as_object_mut() {
                object.insert("proved".to_owned(), serde_json::json!(report.proved));
                object.insert(
                    "summary".to_owned(),
                    serde_json::json!({
                        "errors": errors, "warnings": warnings, "notes": notes,
                        "buckets": report.stats.buckets, "queries": report.stats.queries,
                        "unknown": report.stats.unknown,
                    }),
                );
            }
            io.out(&format!("{json:#}\n"));
        }
        ReportFormat::Sarif => {
            let entries: Vec<(Diagnostic, serde_json::Value)> = report
                .findings
                .iter()
                .map(|f| {
                    let witnesses: Vec<serde_json::Value> =
                        f.witnesses.iter().map(witness_json).collect();
                    (
                        f.diagnostic.clone(),
                        serde_json::json!({ "witnesses": witnesses }),
                    )
                })
                .collect();
            io.out(&format!("{:#}\n", crate::sarif::render(&entries, &sources)));
        }
    }
    if errors == 0 {
        Exit::Success
    } else {
        Exit::Failure
    }
}

/// Adds one side of a diff to the set: a path, or `REV:PATH` read with git.
fn add_side(sources: &mut SourceSet, side: &str) -> Result<Vec<tollgate_grammar::FileId>, String> {
    let mut ids = Vec::new();
    let from_git = side
        .split_once(':')
        .filter(|(rev, _)| !rev.is_empty() && !Path::new(side).exists());
    match from_git {
        None => {
            for file in policy_files(Path::new(side))? {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
                ids.push(sources.add(&file.display().to_string(), &text));
            }
        }
        Some((rev, path)) => {
            let git = |args: &[&str]| -> Result<String, String> {
                let output = std::process::Command::new("git")
                    .args(args)
                    .output()
                    .map_err(|e| format!("cannot run git: {e}"))?;
                if !output.status.success() {
                    return Err(format!(
                        "git {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            };
            let listing = git(&["ls-tree", "-r", "--name-only", rev, "--", path])?;
            let mut files: Vec<&str> = listing.lines().filter(|l| l.ends_with(".toll")).collect();
            files.sort_unstable();
            if files.is_empty() {
                return Err(format!("no `.toll` files at `{side}`"));
            }
            for file in files {
                let text = git(&["show", &format!("{rev}:{file}")])?;
                ids.push(sources.add(&format!("{rev}:{file}"), &text));
            }
        }
    }
    Ok(ids)
}

fn diff(
    io: &mut Io<'_>,
    old: &str,
    new: &str,
    format: ReportFormat,
    fail_on: Option<FailOn>,
    timeout: u32,
) -> Exit {
    let mut sources = SourceSet::new();
    let old_ids = match add_side(&mut sources, old) {
        Ok(ids) => ids,
        Err(message) => return io.usage(&message),
    };
    let new_ids = match add_side(&mut sources, new) {
        Ok(ids) => ids,
        Err(message) => return io.usage(&message),
    };
    let mut policies = Vec::new();
    for ids in [&old_ids, &new_ids] {
        match crate::load_subset(&sources, ids) {
            Ok(policy) => policies.push(policy),
            Err(diagnostics) => {
                report(
                    io,
                    &diagnostics,
                    &sources,
                    if format == ReportFormat::Human {
                        Format::Human
                    } else {
                        Format::Json
                    },
                );
                return Exit::Failure;
            }
        }
    }
    let (old_policy, new_policy) = (&policies[0], &policies[1]);
    let mut result = crate::verify::diff::diff(old_policy, new_policy, &verify_options(timeout));
    let gate = fail_on == Some(FailOn::Widen);
    if gate {
        for finding in &mut result.findings {
            if finding.diagnostic.code == diagnostic::Code::Widened
                && finding.diagnostic.severity == diagnostic::Severity::Warning
            {
                finding.diagnostic = diagnostic::as_error(finding.diagnostic.clone());
            }
        }
    }
    let summary = |change: crate::verify::diff::Change| {
        result.pairs.iter().filter(|p| p.change == change).count()
    };
    use crate::verify::diff::Change;
    match format {
        ReportFormat::Human => {
            io.out(&render_findings(&result.findings, &sources));
            for pair in result
                .pairs
                .iter()
                .filter(|p| p.change != Change::Unchanged)
            {
                let word = match pair.change {
                    Change::Widened => "widened",
                    Change::Narrowed => "narrowed",
                    Change::Changed => "widened and narrowed",
                    Change::Unchanged => "unchanged",
                };
                let note = if pair.acknowledged {
                    " (acknowledged)"
                } else {
                    ""
                };
                io.out(&format!("{word}: {} -> {}{note}\n", pair.agent, pair.tool));
            }
            io.out(&format!(
                "diff: {} widened, {} narrowed, {} both, {} unchanged (agent, tool) pairs; {} solver queries, {} unknown\n",
                summary(Change::Widened),
                summary(Change::Narrowed),
                summary(Change::Changed),
                summary(Change::Unchanged),
                result.queries,
                result.unknown
            ));
        }
        ReportFormat::Json | ReportFormat::Sarif => {
            let entries: Vec<(Diagnostic, serde_json::Value)> = result
                .findings
                .iter()
                .map(|f| {
                    let witnesses: Vec<serde_json::Value> =
                        f.witnesses.iter().map(witness_json).collect();
                    (
                        f.diagnostic.clone(),
                        serde_json::json!({ "witnesses": witnesses }),
                    )
                })
                .collect();
            if format == ReportFormat::Sarif {
                io.out(&format!("{:#}\n", crate::sarif::render(&entries, &sources)));
            } else {
                let pairs: Vec<serde_json::Value> = result
                    .pairs
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "agent": p.agent, "tool": p.tool,
                            "change": format!("{:?}", p.change).to_lowercase(),
                            "acknowledged": p.acknowledged,
                        })
                    })
                    .collect();
                let diagnostics: Vec<Diagnostic> = entries.iter().map(|(d, _)| d.clone()).collect();
                let mut json = diagnostic::render_json(&diagnostics, &sources);
                if let Some(list) = json.get_mut("diagnostics").and_then(|d| d.as_array_mut()) {
                    for (entry, (_, extra)) in list.iter_mut().zip(&entries) {
                        if let (Some(object), Some(w)) =
                            (entry.as_object_mut(), extra.get("witnesses"))
                        {
                            object.insert("witnesses".to_owned(), w.clone());
                        }
                    }
                }
                if let Some(object) = json.as_object_mut() {
                    object.insert("pairs".to_owned(), serde_json::json!(pairs));
                }
                io.out(&format!("{json:#}\n"));
            }
        }
    }
    let inconclusive = result
        .findings
        .iter()
        .any(|f| f.diagnostic.code == diagnostic::Code::Inconclusive);
    if gate && (result.widened_unacknowledged() > 0 || inconclusive) {
        Exit::Failure
    } else {
        Exit::Success
    }
}

fn graph(io: &mut Io<'_>, path: &Path, timeout: u32) -> Exit {
    let (policy, _) = match load(io, path, Format::Human) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let (_, graph) = crate::verify::verify_with_graph(&policy, &verify_options(timeout));
    io.out(&graph.to_dot(&policy));
    Exit::Success
}

fn test(io: &mut Io<'_>, path: &Path, format: Format) -> Exit {
    let (policy, sources) = match load(io, path, format) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let outcomes = testing::run_all(&policy);
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    match format {
        Format::Human => {
            for outcome in &outcomes {
                let status = if outcome.passed() { "ok" } else { "FAILED" };
                io.out(&format!("test {:?} ... {status}\n", outcome.name));
                for step in outcome.steps.iter().filter(|s| !s.passed) {
                    let request = &policy
                        .tests
                        .iter()
                        .find(|t| t.span == outcome.span)
                        .and_then(|t| t.steps.get(step.index));
                    let what = request.map_or(String::new(), |s| {
                        format!(": {} calls {}", s.request.agent, s.request.tool)
                    });
                    io.out(&format!(
                        "  step {} at {}{what}\n    expected: {}\n    actual:   {}\n",
                        step.index + 1,
                        location(&sources, step.span),
                        testing::describe_expectation(&policy, &step.expected),
                        testing::describe_decision(&policy, &step.actual),
                    ));
                    if let Some(detail) = &step.actual.detail {
                        io.out(&format!("    because:  {detail}\n"));
                    }
                }
            }
            io.out(&format!(
                "\n{} test{}: {} passed; {failed} failed\n",
                outcomes.len(),
                plural(outcomes.len()),
                outcomes.len() - failed
            ));
        }
        Format::Json => {
            let tests: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|outcome| {
                    let failures: Vec<serde_json::Value> = outcome
                        .steps
                        .iter()
                        .filter(|s| !s.passed)
                        .map(|s| {
                            serde_json::json!({
                                "step": s.index + 1,
                                "location": location(&sources, s.span),
                                "expected": testing::describe_expectation(&policy, &s.expected),
                                "actual": testing::describe_decision(&policy, &s.actual),
                                "detail": s.actual.detail,
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "name": outcome.name,
                        "passed": outcome.passed(),
                        "steps": outcome.steps.len(),
                        "failures": failures,
                    })
                })
                .collect();
            let json = serde_json::json!({
                "tests": tests,
                "passed": outcomes.len() - failed,
                "failed": failed,
            });
            io.out(&format!("{json:#}\n"));
        }
    }
    if failed == 0 {
        Exit::Success
    } else {
        Exit::Failure
    }
}

fn fmt(io: &mut Io<'_>, path: &Path, check_only: bool) -> Exit {
    let files = match policy_files(path) {
        Ok(files) => files,
        Err(message) => return io.usage(&message),
    };
    let mut exit = Exit::Success;
    for file in files {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => return io.usage(&format!("cannot read `{shown}`: {error}")),
        };
        let sources = SourceSet::single(&shown, &text);
        let parsed = tollgate_grammar::parse(&text, tollgate_grammar::FileId(0));
        if !parsed.errors.is_empty() {
            let diagnostics: Vec<Diagnostic> =
                parsed.errors.iter().map(diagnostic::syntax).collect();
            io.err(&diagnostic::render_human(&diagnostics, &sources));
            io.err(&format!(
                "error: cannot format `{shown}`: it does not parse\n"
            ));
            exit = Exit::Failure;
            continue;
        }
        let formatted = tollgate_grammar::format::format(&parsed.file, &parsed.comments, &text);
        if formatted == text {
            continue;
        }
        if check_only {
            io.out(&format!("would reformat: {shown}\n"));
            exit = Exit::Failure;
        } else if let Err(error) = std::fs::write(&file, formatted) {
            return io.usage(&format!("cannot write `{shown}`: {error}"));
        } else {
            io.out(&format!("formatted: {shown}\n"));
        }
    }
    exit
}

// -- keys, compile, issue, audit ----------------------------------------------------------------

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds with their UTC date, e.g. `1767225600 (2026-01-01 00:00:00 UTC)`.
fn when(seconds: u64) -> String {
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

fn keygen(io: &mut Io<'_>, name: &Path, force: bool) -> Exit {
    let mut seed = [0u8; 32];
    if let Err(error) = getrandom::getrandom(&mut seed) {
        return io.usage(&format!("no randomness for a key: {error}"));
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    match keys::write_pair(&key, name, force) {
        Ok((secret, public)) => {
            io.out(&format!(
                "wrote {} (secret, mode 0600) and {}\n",
                secret.display(),
                public.display()
            ));
            Exit::Success
        }
        Err(message) => io.usage(&message),
    }
}

fn compile(
    io: &mut Io<'_>,
    path: &Path,
    output: &Path,
    key: &Path,
    policy_version: u64,
    verbose: bool,
) -> Exit {
    let (policy, _) = match load(io, path, Format::Human) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let key = match keys::signing_key(key) {
        Ok(key) => key,
        Err(message) => return io.usage(&message),
    };
    let compiled = match crate::codegen::compile_version(&policy, &key, policy_version) {
        Ok(compiled) => compiled,
        Err(error) => {
            io.err(&format!("error: cannot compile: {error:?}\n"));
            return Exit::Failure;
        }
    };
    // Translation validation: the table must decide exactly as the source, or nothing is written.
    let started = std::time::Instant::now();
    let proof = tollgate_runtime::table::Table::parse(&compiled.bytes)
        .map_err(|e| format!("the compiler wrote a table its own loader refuses: {e}"))
        .and_then(|table| {
            crate::verify::translation::validate(
                &policy,
                &table,
                &crate::verify::Options::default(),
            )
            .map_err(|m| m.to_string())
        });
    let proof = match proof {
        Ok(proof) => proof,
        Err(message) => {
            io.err(&format!(
                "error: translation validation failed: {message}\n"
            ));
            return Exit::Failure;
        }
    };
    let proof_time = started.elapsed();
    if let Err(error) = std::fs::write(output, &compiled.bytes) {
        return io.usage(&format!("cannot write `{}`: {error}", output.display()));
    }
    io.out(&format!(
        "compiled {} rules into {} ({} bytes, {:.1} bytes per rule), policy version {policy_version}, policy hash {}\n",
        policy.rules.len(),
        output.display(),
        compiled.stats.bytes,
        compiled.stats.bytes as f64 / policy.rules.len().max(1) as f64,
        hex::encode(compiled.policy_hash)
    ));
    if verbose {
        io.out(&format!(
            "  buckets {}, rule entries {}, program bytes {}\n  translation validated: {} programs in {} buckets equivalent to their rules (Z3, {:.2?})\n",
            compiled.stats.buckets, compiled.stats.entries, compiled.stats.programs_bytes, proof.programs, proof.buckets, proof_time
        ));
    }
    Exit::Success
}

fn parse_duration(text: &str) -> Option<u64> {
    let lexed = tollgate_grammar::lexer::lex(text, tollgate_grammar::FileId(0));
    match (lexed.errors.is_empty(), lexed.tokens.as_slice()) {
        (true, [(_, tollgate_grammar::lexer::Tok::Duration(seconds), _)]) => Some(*seconds),
        _ => None,
    }
}

#[derive(Debug)]
struct IssueOptions {
    table: PathBuf,
    agent: String,
    via: Vec<String>,
    ttl: String,
    scope: Vec<String>,
    env: Option<String>,
    audience: Option<String>,
    state: Option<PathBuf>,
    key: PathBuf,
    time: Option<u64>,
    output: PathBuf,
}

fn issue(io: &mut Io<'_>, options: &IssueOptions) -> Exit {
    let Some(ttl) = parse_duration(&options.ttl) else {
        return io.usage(&format!(
            "`{}` is not a duration such as `10m`",
            options.ttl
        ));
    };
    let bytes = match std::fs::read(&options.table) {
        Ok(bytes) => bytes,
        Err(error) => {
            return io.usage(&format!(
                "cannot read `{}`: {error}",
                options.table.display()
            ))
        }
    };
    let table = match tollgate_runtime::table::Table::parse(&bytes) {
        Ok(table) => table,
        Err(error) => {
            return io.usage(&format!(
                "`{}` is not a decision table: {error}",
                options.table.display()
            ))
        }
    };
    let key = match keys::signing_key(&options.key) {
        Ok(key) => key,
        Err(message) => return io.usage(&message),
    };
    let revoked = match &options.state {
        Some(state) => match gate::read_revocations(state) {
            Ok(revoked) => revoked,
            Err(message) => return io.usage(&message),
        },
        None => Vec::new(),
    };
    let mut id = [0u8; 16];
    if let Err(error) = getrandom::getrandom(&mut id) {
        return io.usage(&format!("no randomness for a credential id: {error}"));
    }
    let claims = crate::credential::Claims {
        agent: &options.agent,
        via: &options.via,
        env: options.env.as_deref(),
        audience: options.audience.as_deref(),
        scope: &options.scope,
        issued_at: options.time.unwrap_or_else(now),
        ttl,
        id,
    };
    let is_revoked = |name: &str| revoked.iter().any(|r| r == name);
    match crate::credential::issue(&table, &claims, &key, &is_revoked) {
        Ok(credential) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&credential);
            if let Err(error) = std::fs::write(&options.output, format!("{encoded}\n")) {
                return io.usage(&format!(
                    "cannot write `{}`: {error}",
                    options.output.display()
                ));
            }
            let chain = if options.via.is_empty() {
                String::new()
            } else {
                format!(" on behalf of `{}`", options.via.join(" -> "))
            };
            io.out(&format!(
                "issued a credential for `{}`{chain} valid {} from {} to {}: {}\n",
                options.agent,
                tollgate_grammar::format::duration(ttl),
                when(claims.issued_at),
                when(claims.issued_at.saturating_add(ttl)),
                options.output.display()
            ));
            Exit::Success
        }
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            Exit::Failure
        }
    }
}

fn audit_verify(
    io: &mut Io<'_>,
    log: &Path,
    key: &Path,
    key_name: &str,
    latest: Option<&Path>,
) -> Exit {
    let key = match keys::verifying_key(key) {
        Ok(key) => key,
        Err(message) => return io.usage(&message),
    };
    let bytes = match std::fs::read(log) {
        Ok(bytes) => bytes,
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", log.display())),
    };
    let latest = match latest.map(std::fs::read).transpose() {
        Ok(latest) => latest,
        Err(error) => return io.usage(&format!("cannot read the latest checkpoint: {error}")),
    };
    match crate::audit::verify_against(&bytes, &key, key_name, latest.as_deref()) {
        Ok(verified) => {
            io.out(&format!(
                "ok: {} records, {} signed checkpoints, chain and tree intact\n",
                verified.records, verified.checkpoints
            ));
            Exit::Success
        }
        Err(problem) => {
            io.err(&format!("error: {}\n", problem.message));
            if let Some(record) = problem.record {
                io.err(&format!("  first bad record: {record}\n"));
            }
            Exit::Failure
        }
    }
}

fn audit_show(io: &mut Io<'_>, log: &Path) -> Exit {
    let bytes = match std::fs::read(log) {
        Ok(bytes) => bytes,
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", log.display())),
    };
    let entries = match crate::audit::parse(&bytes) {
        Ok(entries) => entries,
        Err(problem) => {
            io.err(&format!("error: {}\n", problem.message));
            return Exit::Failure;
        }
    };
    for entry in entries {
        match entry {
            crate::audit::Entry::Record(record) => {
                io.out(&format!("{}\n", crate::audit::record_json(&record)))
            }
            crate::audit::Entry::Checkpoint(note) => io.out(&format!(
                "{}\n",
                serde_json::json!({ "checkpoint": String::from_utf8_lossy(&note) })
            )),
        }
    }
    Exit::Success
}
