//! The `kubelet-gate` command: parses arguments, loads the configuration and hands over to the
//! library. Exit codes: 0 success, 1 a run-time failure, 2 bad configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kubelet_gate::app;
use kubelet_gate::config::Config;

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
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, String> {
        let mut config = Config::load(&self.config).map_err(|e| e.to_string())?;
        if let Some(n) = &self.node_name {
            config.node_name = n.clone();
        }
        if let Some(a) = self.address {
            config.listen.set_ip(a);
        }
        if let Some(p) = self.port {
            config.listen.set_port(p);
        }
        if let Some(d) = &self.cert_dir {
            config.cert_dir = d.clone();
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::CheckConfig(args) => check_config(&args),
        Command::Serve(args) => serve(&args),
    }
}

fn check_config(args: &ConfigArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    if let Err(e) = app::check_supported(&config) {
        return config_error(&e.to_string());
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBELET_GATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
