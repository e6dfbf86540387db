//! The `kubelet-gate` command: parses arguments, loads the configuration and hands over to the
//! library. Exit codes: 0 success, 1 a run-time failure (a policy-test mismatch, a diagnose
//! finding), 2 bad configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kubelet_gate::app;
use kubelet_gate::config::{Config, Overrides};
use kubelet_gate::tools::{self, ToolError, diagnose, explain, policy_test};

#[derive(Parser)]
#[command(
    name = "kubelet-gate",
    version,
    about = "The kubelet's port-10250 security in front of a node API that has none"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ConfigArgs),
    /// Validate the configuration and print the effective configuration.
    CheckConfig(ConfigArgs),
    /// Show what the gateway would do with one request: the canonical-path decision, the route,
    /// each review in order, and the status and body it would answer.
    Explain(ExplainArgs),
    /// Run a table of expected decisions against the configured authorizer; exit 1 on any
    /// mismatch.
    PolicyTest(PolicyTestArgs),
    /// The x509 doctor: connect to a node's port 10250 as kube-apiserver would and explain
    /// whether it would accept it, and why not. Exit 0 only when everything kube-apiserver
    /// needs holds.
    Diagnose(DiagnoseArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

impl From<OutputFormat> for tools::Output {
    fn from(o: OutputFormat) -> Self {
        match o {
            OutputFormat::Text => tools::Output::Text,
            OutputFormat::Json => tools::Output::Json,
        }
    }
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The GatewayConfiguration YAML file.
    #[arg(long)]
    config: PathBuf,
    /// The authenticated user.
    #[arg(long, required_unless_present = "anonymous")]
    user: Option<String>,
    /// A group of the user (repeatable). system:authenticated is added as the API server adds it.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// A request without credentials (system:anonymous, system:unauthenticated).
    #[arg(long, conflicts_with_all = ["user", "groups"])]
    anonymous: bool,
    /// The HTTP method (case-sensitive, as on the wire).
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request target (/pods?x=y) or a full URL (https://10.0.0.5:10250/pods).
    path: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct PolicyTestArgs {
    /// The GatewayConfiguration YAML file.
    #[arg(long)]
    config: PathBuf,
    /// The cases: name, user, groups, method, path, expect (allow | deny | an HTTP status).
    cases: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct DiagnoseArgs {
    /// The node's address as kube-apiserver dials it (port 10250 by default); with --node,
    /// read from the Node.
    #[arg(value_name = "HOST[:PORT]", required_unless_present_any = ["node", "bootstrap_kubeconfig"])]
    target: Option<String>,
    /// Instead of the node's port: would a node joining with this bootstrap kubeconfig (the
    /// gateway's bootstrapKubeconfig or a kubelet's --bootstrap-kubeconfig) get its client
    /// certificate? With --kubeconfig (an identity that may list clusterrolebindings) and
    /// --node for the node's CSRs.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["target", "kubelet_certificate_authority", "kubelet_client_certificate"]
    )]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// kube-apiserver's CA bundle for kubelet serving certificates. Without it kube-apiserver
    /// verifies nothing.
    #[arg(long, value_name = "FILE")]
    kubelet_certificate_authority: Option<PathBuf>,
    /// kube-apiserver's client certificate for kubelets.
    #[arg(long, value_name = "FILE", requires = "kubelet_client_key")]
    kubelet_client_certificate: Option<PathBuf>,
    /// Its key.
    #[arg(long, value_name = "FILE", requires = "kubelet_client_certificate")]
    kubelet_client_key: Option<PathBuf>,
    /// The order in which kube-apiserver picks a Node address.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    kubelet_preferred_address_types: String,
    /// kube-apiserver's timeout for calls to kubelets.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    kubelet_timeout: String,
    /// A kubeconfig to read the Node and its serving CSRs with (needs --node), or with
    /// --bootstrap-kubeconfig the cluster's bindings and CSRs.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The Node to diagnose: its addresses, kubelet port and serving CSRs (needs --kubeconfig),
    /// or with --bootstrap-kubeconfig the node whose client CSRs to show.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The GatewayConfiguration YAML file.
    #[arg(long)]
    config: PathBuf,
    /// Overrides nodeName.
    #[arg(long)]
    node_name: Option<String>,
    /// Overrides address.
    #[arg(long)]
    address: Option<std::net::IpAddr>,
    /// Overrides port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Overrides certDir.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Overrides ops.address (the /healthz, /readyz and /metrics listener).
    #[arg(long)]
    ops_address: Option<std::net::SocketAddr>,
}

impl ConfigArgs {
    /// The file with the flags in place of its values, validated as one.
    fn load(&self) -> Result<Config, String> {
        let overrides = Overrides {
            node_name: self.node_name.clone(),
            address: self.address,
            port: self.port,
            cert_dir: self.cert_dir.clone(),
            ops_address: self.ops_address,
        };
        Config::load_with(&self.config, &overrides).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) | Command::CheckConfig(_) => "info",
        // The tools print their own reports; the log stays for real trouble.
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    match cli.command {
        Command::CheckConfig(args) => check_config(&args),
        Command::Serve(args) => serve(&args),
        Command::Explain(args) => run_tool(explain_command(args)),
        Command::PolicyTest(args) => run_tool(policy_test_command(args)),
        Command::Diagnose(args) => run_tool(diagnose_command(args)),
    }
}

/// Runs a tool on a small runtime; the tool returns its exit code or an error.
fn run_tool(tool: impl std::future::Future<Output = Result<ExitCode, ToolError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubelet-gate: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(tool) {
        Ok(code) => code,
        Err(e) if e.is_usage() => config_error(&e.to_string()),
        Err(e) => {
            eprintln!("kubelet-gate: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, ToolError> {
    Config::load(path).map_err(|e| ToolError::Usage(e.to_string()))
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("kubelet-gate: warning: {w}");
    }
}

async fn explain_command(args: ExplainArgs) -> Result<ExitCode, ToolError> {
    let method = http::Method::from_bytes(args.method.as_bytes())
        .map_err(|_| ToolError::Usage(format!("--method {:?} is not an HTTP method", args.method)))?;
    let identity =
        explain::Identity::new(args.user.as_deref(), &args.groups, args.anonymous).map_err(ToolError::Usage)?;
    let config = load_config(&args.config)?;
    let explainer = explain::Explainer::load(&config).await?;
    warn_all(&explainer.warnings);
    let request = explain::Request {
        method,
        target: args.path,
        identity,
    };
    let x = explainer.explain(&request).await;
    match tools::Output::from(args.output) {
        tools::Output::Json => print!("{}", tools::to_json(&x)),
        tools::Output::Text => print!("{}", explain::render(&x, &explainer.description)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn policy_test_command(args: PolicyTestArgs) -> Result<ExitCode, ToolError> {
    let config = load_config(&args.config)?;
    let cases = policy_test::load(&args.cases)?;
    let explainer = explain::Explainer::load(&config).await?;
    warn_all(&explainer.warnings);
    let report = policy_test::run(&explainer, &cases).await;
    match tools::Output::from(args.output) {
        tools::Output::Json => print!("{}", tools::to_json(&report)),
        tools::Output::Text => print!("{}", policy_test::render(&report)),
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn diagnose_command(args: DiagnoseArgs) -> Result<ExitCode, ToolError> {
    let preferred =
        diagnose::cluster::parse_preferred(&args.kubelet_preferred_address_types).map_err(ToolError::Usage)?;
    let timeout = kubelet_gate::config::parse_go_duration(&args.kubelet_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ToolError::Usage(format!(
                "--kubelet-timeout {:?} is not a positive duration",
                args.kubelet_timeout
            ))
        })?;
    if let Some(bootstrap) = args.bootstrap_kubeconfig {
        let options = diagnose::join::JoinOptions {
            bootstrap_kubeconfig: bootstrap,
            kubeconfig: args.kubeconfig,
            node: args.node,
            timeout,
        };
        let report = diagnose::join::run(&options, diagnose::unix_now()).await?;
        match tools::Output::from(args.output) {
            tools::Output::Json => print!("{}", tools::to_json(&report)),
            tools::Output::Text => print!("{}", diagnose::join::render(&report)),
        }
        return Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    match (&args.node, &args.kubeconfig) {
        (Some(_), None) => return Err(ToolError::Usage("--node needs --kubeconfig".into())),
        (None, Some(_)) => return Err(ToolError::Usage("--kubeconfig needs --node".into())),
        _ => {}
    }
    let options = diagnose::Options {
        target: args.target,
        ca_file: args.kubelet_certificate_authority,
        client_cert: args.kubelet_client_certificate,
        client_key: args.kubelet_client_key,
        preferred_address_types: preferred,
        kubeconfig: args.kubeconfig,
        node: args.node,
        timeout,
    };
    let report = diagnose::run(&options).await?;
    match tools::Output::from(args.output) {
        tools::Output::Json => print!("{}", tools::to_json(&report)),
        tools::Output::Text => print!("{}", diagnose::render(&report)),
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Loads and checks everything `serve` would (files read, nothing written, no port bound, no
/// API server contacted), then prints the effective configuration.
fn check_config(args: &ConfigArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubelet-gate: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::check(&config)) {
        Ok(warnings) => warn_all(&warnings),
        Err(e) if e.is_configuration() => return config_error(&e.to_string()),
        Err(e) => {
            eprintln!("kubelet-gate: {e}");
            return ExitCode::from(1);
        }
    }
    print!("{}", config.to_yaml());
    ExitCode::SUCCESS
}

fn serve(args: &ConfigArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubelet-gate: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::run(&config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_configuration() => config_error(&e.to_string()),
        Err(e) => {
            eprintln!("kubelet-gate: {e}");
            ExitCode::from(1)
        }
    }
}

fn config_error(message: &str) -> ExitCode {
    eprintln!("kubelet-gate: {message}");
    ExitCode::from(2)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBELET_GATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ));
    match format {
        // Control characters in any field (a CN, a user name) are escaped: no forged lines.
        LogFormat::Text => builder.fmt_fields(kubelet_gate::ops::log_format::EscapedFields).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but the empty string
/// (no-color.org). A file or journald gets plain text.
fn use_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
    }
}
