//! `ebm`: the command-line client of the energy-based-model training service. This file holds
//! the command tree (clap) and the dispatch; `output` prints results as text or JSON, `follow`
//! draws a job's progress, `demo` runs the guided tour, `local_server` starts an `ebm-server`
//! for it, `picture` draws results as PNG (`--png`), `sweeps` shows sweeps.
mod demo;
mod follow;
mod local_server;
mod output;
mod picture;
mod sweeps;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ebm_client::sweep::{parse_grid, parse_label};
use ebm_client::v1::{Job, JobState};
use ebm_client::{spec::parse_spec, Client, ClientError, DatasetFormat};
use output::Printer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ebm",
    version,
    about = "Train and query energy-based models on an ebm-server"
)]
struct Cli {
    /// gRPC address of the server (https://HOST:PORT for a server that serves TLS).
    #[arg(
        long,
        global = true,
        env = "EBM_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Bearer token (maps to your tenant on the server).
    #[arg(long, global = true, env = "EBM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate that signs the server's certificate (a private CA; for
    /// https:// URLs; default: the public CAs).
    #[arg(long, global = true, env = "EBM_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mutual TLS; needs --client-key).
    #[arg(long, global = true, env = "EBM_CLIENT_CERT", value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "EBM_CLIENT_KEY", value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// Output format: human-readable text, or exactly one JSON document on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `--png PATH`: draw a sample set or an observe histogram as a picture.
#[derive(Args, Clone)]
struct PngArgs {
    /// Also write a PNG: a grid of samples (sample jobs, .npy artifacts) or a bar chart of
    /// the histogram with mode (red), mean (blue) and map_statistic (green) marked (observe jobs).
    #[arg(long, value_name = "PATH")]
    png: Option<PathBuf>,
    /// Shape of one sample in the grid, HxW (default: the sample job's image_width, else a
    /// square, else one pixel row per sample).
    #[arg(long, value_name = "HxW", value_parser = picture::parse_shape)]
    shape: Option<(usize, usize)>,
    /// How many samples the grid shows (the first ones).
    #[arg(long, value_name = "N", default_value_t = picture::DEFAULT_SAMPLES as u32,
          value_parser = clap::value_parser!(u32).range(1..=picture::MAX_SAMPLES as i64))]
    png_samples: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Upload, list, inspect and delete data sets.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Submit a job from a TOML spec (see docs/job-spec.md).
    Submit {
        spec: PathBuf,
        /// Override a spec value, e.g. --set train.epochs=5 (repeatable; values are TOML).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Idempotency key: resubmitting with the same key returns the same job.
        #[arg(long)]
        request_id: Option<String>,
        /// Higher runs first.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Attach a label, e.g. --label team=vision (repeatable; `ebm jobs list --label` filters).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Follow the job until it finishes (like `ebm watch`).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        png: PngArgs,
    },
    /// List and inspect jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Submit a grid of variants of a spec as one sweep (one job per variant).
    Sweep {
        spec: PathBuf,
        /// A spec field and its values, e.g. --grid train.learning_rate=[0.01,0.05]
        /// (repeatable; the sweep is the product of all grids).
        #[arg(long = "grid", value_name = "FIELD=[V1,V2]", value_parser = parse_grid)]
        grid: Vec<ebm_client::v1::GridAxis>,
        /// Run each variant with N seeds: the spec's seed, seed + 1, ..., seed + N - 1.
        #[arg(long, default_value_t = 0)]
        seeds: u32,
        /// Override a spec value for all variants (like `ebm submit --set`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Extra label for every job of the sweep (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Idempotency key: resubmitting with the same key returns the same sweep.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// List, inspect and cancel sweeps.
    #[command(subcommand)]
    Sweeps(SweepsCommand),
    /// Follow a job's progress; exits 0 iff it succeeded.
    Watch {
        id: String,
        #[command(flatten)]
        png: PngArgs,
    },
    /// Cancel a job.
    Cancel { id: String },
    /// List, inspect, download and import models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Train an RBM on the bundled handwritten digits and show what it learned.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Upload a data file (.npy, .csv, .fasta/.a2m).
    Upload {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// File format (default: from the extension).
        #[arg(long, value_parser = ["npy", "csv", "fasta"])]
        format: Option<String>,
    },
    List,
    Get {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand)]
enum SweepsCommand {
    List,
    /// A sweep's variants: job id, grid values, state and final metrics.
    Get {
        id: String,
        /// Sort by this metric, best first (descending; ascending for names with error,
        /// loss, stderr or r_hat).
        #[arg(long, value_name = "METRIC")]
        sort: Option<String>,
    },
    /// Cancel every unfinished job of the sweep.
    Cancel {
        id: String,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    List {
        /// Only jobs in this state.
        #[arg(long, value_parser = ["queued", "running", "succeeded", "failed", "cancelled"])]
        state: Option<String>,
        /// Only jobs with this label (repeatable: all must match).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    Get {
        id: String,
        #[command(flatten)]
        png: PngArgs,
    },
    /// Download a file a job produced (e.g. samples.npy of a sample job).
    Artifact {
        id: String,
        name: String,
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        png: PngArgs,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    List,
    Get {
        id: String,
    },
    /// Download a model's safetensors file.
    Download {
        id: String,
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Contact prediction of a potts model (DCA): site pairs ranked by the APC-corrected
    /// Frobenius norm of their couplings in the zero-sum gauge. Text output is CSV
    /// (rank,i,j,score,frobenius); --output json gives {"pairs": [...], ...}.
    Contacts {
        id: String,
        /// At most this many pairs, best first (0 = every pair).
        #[arg(long, default_value_t = 0)]
        top: u32,
        /// Only pairs of sites at least this far apart in the sequence (j - i >= S).
        #[arg(long, value_name = "S", default_value_t = 1)]
        min_separation: u32,
        /// Also draw the contact map: APC scores (white to dark blue), the listed pairs
        /// (at most the top L with --top 0) marked red below the diagonal.
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
    },
    /// Import a safetensors file as a model.
    Import {
        file: PathBuf,
        /// bernoulli_rbm | gaussian_rbm | potts | lattice_ising
        #[arg(long = "type")]
        model_type: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.output);
    match run(cli, &printer).await {
        Ok(code) => code,
        Err(error) => {
            printer.error(&error);
            ExitCode::FAILURE
        }
    }
}

async fn connect(cli: &Cli) -> Result<Client, ClientError> {
    let tls = ebm_client::TlsOptions {
        ca_cert: cli.ca_cert.clone(),
        client_cert: cli.client_cert.clone(),
        client_key: cli.client_key.clone(),
    };
    Client::connect_with(cli.server.clone(), cli.token.clone(), &tls).await
}

async fn run(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(args) => return demo::run(&cli, args, printer).await,
        Command::Datasets(command) => {
            let client = connect(&cli).await?;
            match command {
                DatasetsCommand::Upload { file, name, format } => {
                    let format = format
                        .as_deref()
                        .map(DatasetFormat::from_name)
                        .transpose()?;
                    let dataset = client
                        .upload_dataset_file(file, name.clone(), format)
                        .await?;
                    printer.dataset(&dataset, "uploaded");
                }
                DatasetsCommand::List => printer.datasets(&client.list_datasets().await?),
                DatasetsCommand::Get { id } => printer.dataset(&client.get_dataset(id).await?, ""),
                DatasetsCommand::Delete { id } => {
                    client.delete_dataset(id).await?;
                    printer.deleted(id);
                }
            }
        }
        Command::Submit {
            spec,
            overrides,
            request_id,
            priority,
            labels,
            watch,
            png,
        } => {
            if png.png.is_some() && !*watch {
                bail!("--png draws a finished job: add --watch, or run `ebm jobs get ID --png PATH` later");
            }
            let spec = prepare_spec(&cli, spec, overrides).await?;
            let client = connect(&cli).await?;
            let job = client
                .submit_labelled(spec, request_id.clone(), *priority, labels)
                .await?;
            let client = connect(&cli).await?;
            if *watch {
                return follow_to_exit(&client, &job.id, printer, png).await;
            }
            printer.submitted(&job);
        }
        Command::Jobs(command) => {
            let client = connect(&cli).await?;
            match command {
                JobsCommand::List { state, labels } => {
                    let state = state.as_deref().and_then(JobState::from_name);
                    printer.jobs(&client.list_labelled_jobs(state, labels).await?);
                }
                JobsCommand::Get { id, png } => {
                    let job = client.get_job(id).await?;
                    let picture = draw_job(&client, &job, png).await?;
                    printer.job_with_picture(&job, picture.as_ref());
                }
                JobsCommand::Artifact { id, name, out, png } => {
                    let bytes = client.download_artifact(id, name).await?;
                    write_file(out, &bytes)?;
                    let picture = match &png.png {
                        Some(path) => {
                            let job = client.get_job(id).await?;
                            Some(draw_samples(&bytes, name, &job, png, path)?)
                        }
                        None => None,
                    };
                    printer.written_with_picture(id, out, bytes.len(), picture.as_ref());
                }
            }
        }
        Command::Sweep {
            spec,
            grid,
            seeds,
            overrides,
            labels,
            request_id,
        } => {
            let spec = prepare_spec(&cli, spec, overrides).await?;
            let client = connect(&cli).await?;
            let sweep = client
                .submit_sweep(spec, grid.clone(), *seeds, request_id.clone(), labels)
                .await?;
            sweeps::print_sweep(printer, &sweep, None, "submitted")?;
        }
        Command::Sweeps(command) => {
            let client = connect(&cli).await?;
            match command {
                SweepsCommand::List => sweeps::print_sweeps(printer, &client.list_sweeps().await?),
                SweepsCommand::Get { id, sort } => {
                    let sweep = client.get_sweep(id).await?;
                    sweeps::print_sweep(printer, &sweep, sort.as_deref(), "")?;
                }
                SweepsCommand::Cancel { id } => {
                    let sweep = client.cancel_sweep(id).await?;
                    sweeps::print_sweep(printer, &sweep, None, "cancelled")?;
                }
            }
        }
        Command::Watch { id, png } => {
            let client = connect(&cli).await?;
            return follow_to_exit(&client, id, printer, png).await;
        }
        Command::Cancel { id } => {
            let client = connect(&cli).await?;
            printer.job(&client.cancel(id).await?);
        }
        Command::Models(command) => {
            let client = connect(&cli).await?;
            match command {
                ModelsCommand::List => printer.models(&client.list_models().await?),
                ModelsCommand::Get { id } => printer.model(&client.get_model(id).await?, ""),
                ModelsCommand::Download { id, out } => {
                    let bytes = client.download_model(id).await?;
                    write_file(out, &bytes)?;
                    printer.written(id, out, bytes.len());
                }
                ModelsCommand::Contacts {
                    id,
                    top,
                    min_separation,
                    png,
                } => {
                    let contacts = client
                        .get_contacts(id, *top, *min_separation, png.is_some())
                        .await?;
                    let picture = match png {
                        Some(path) => Some(draw_contacts(&contacts, *top, path)?),
                        None => None,
                    };
                    print_contacts(printer, &contacts, picture.as_ref());
                }
                ModelsCommand::Import {
                    file,
                    model_type,
                    name,
                } => {
                    let bytes = std::fs::read(file)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                    let name = name.clone().unwrap_or_else(|| file_stem(file));
                    let model = client.import_model(model_type, &name, bytes).await?;
                    printer.model(&model, "imported");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads and parses the spec and uploads its `dataset_path` if it has one.
async fn prepare_spec(
    cli: &Cli,
    spec_path: &Path,
    overrides: &[String],
) -> anyhow::Result<ebm_client::v1::JobSpec> {
    let text = std::fs::read_to_string(spec_path)
        .map_err(|e| anyhow::anyhow!("cannot read the job spec {}: {e}", spec_path.display()))?;
    let mut parsed = parse_spec(&text, overrides)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
    if let Some(path) = &parsed.dataset_path {
        let client = connect(cli).await?;
        let file = resolve_data_path(spec_path, Path::new(path));
        let dataset = client
            .ensure_dataset_file(&file)
            .await
            .map_err(|e| anyhow::anyhow!("uploading dataset_path {}: {e}", file.display()))?;
        parsed.spec.dataset = dataset.id;
    }
    Ok(parsed.spec)
}

/// A relative `dataset_path` is looked up next to the spec file first, then in the current
/// directory.
fn resolve_data_path(spec_path: &Path, data: &Path) -> PathBuf {
    if data.is_absolute() {
        return data.to_path_buf();
    }
    let beside_spec = spec_path.parent().unwrap_or(Path::new("")).join(data);
    if beside_spec.exists() {
        beside_spec
    } else {
        data.to_path_buf()
    }
}

async fn follow_to_exit(
    client: &Client,
    id: &str,
    printer: &Printer,
    png: &PngArgs,
) -> anyhow::Result<ExitCode> {
    let job = follow::follow(client, id, printer.shows_progress()).await?;
    let succeeded = job.state() == JobState::Succeeded;
    // a job that did not succeed has nothing to draw; the exit code says so
    let picture = if succeeded {
        draw_job(client, &job, png).await?
    } else {
        None
    };
    printer.finished_with_picture(&job, picture.as_ref());
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--png` for a job: an observe job's histogram, or a sample job's samples (downloaded).
/// Returns the picture's description (with its path), or `None` without `--png`.
async fn draw_job(client: &Client, job: &Job, png: &PngArgs) -> anyhow::Result<Option<Value>> {
    let Some(path) = &png.png else {
        return Ok(None);
    };
    let kind = job.spec.as_ref().map(|s| s.kind.as_str()).unwrap_or("");
    if !matches!(kind, "sample" | "observe" | "scan") {
        bail!(
            "--png draws sample, observe and scan jobs; job {} is a {kind} job",
            job.id
        );
    }
    let result = match (&job.result, job.state()) {
        (Some(result), JobState::Succeeded) => result,
        _ => bail!(
            "job {} is {}: --png needs a job that succeeded",
            job.id,
            job.state().name()
        ),
    };
    if kind == "observe" {
        let histogram = result
            .histogram
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("job {} has no histogram", job.id))?;
        let (image, mut info) =
            picture::histogram_chart(histogram, result.mode, result.mean, result.map_statistic)?;
        image.write(path)?;
        info["path"] = path.display().to_string().into();
        return Ok(Some(info));
    }
    let bytes = client.download_artifact(&job.id, &result.artifact).await?;
    if kind == "scan" {
        return Ok(Some(draw_scan(&bytes, path)?));
    }
    Ok(Some(draw_samples(
        &bytes,
        &result.artifact,
        job,
        png,
        path,
    )?))
}

/// Draws a .npy matrix of samples (rows) as a grid; the sample job's `image_width` is the
/// default width of one image.
fn draw_samples(
    bytes: &[u8],
    name: &str,
    job: &Job,
    png: &PngArgs,
    path: &Path,
) -> anyhow::Result<Value> {
    let samples = ebm_client::npy::read(bytes)
        .map_err(|e| anyhow::anyhow!("--png draws .npy sample sets; {name} is not one ({e})"))?;
    let width_hint = job
        .spec
        .as_ref()
        .and_then(|s| s.sample.as_ref())
        .and_then(|s| s.image_width)
        .map(|w| w as usize);
    let (image, mut info) =
        picture::sample_grid(&samples, png.shape, width_hint, png.png_samples as usize)?;
    image.write(path)?;
    info["path"] = path.display().to_string().into();
    Ok(info)
}

/// A scan job's heat map: one column per site, one row per state, blue where a mutant
/// lowers the energy, red where it raises it (white: no change, the reference states).
fn draw_scan(bytes: &[u8], path: &Path) -> anyhow::Result<Value> {
    let scan = ebm_client::npy::read(bytes)
        .map_err(|e| anyhow::anyhow!("the scan artifact is not a .npy matrix ({e})"))?;
    let (sites, states) = (scan.rows, scan.cols);
    let transposed: Vec<f64> = (0..states * sites)
        .map(|k| scan.values[(k % sites) * states + k / sites] as f64)
        .collect();
    let (image, mut info) = picture::heat_map(
        states,
        sites,
        &transposed,
        picture::ColourScale::Diverging,
        &[],
    )?;
    image.write(path)?;
    info["path"] = path.display().to_string().into();
    Ok(info)
}

/// The contact map of `ebm models contacts --png`: the APC scores as a heat map, and the
/// listed pairs (at most the top L when every pair was asked for) marked below the diagonal.
fn draw_contacts(
    contacts: &ebm_client::v1::Contacts,
    top: u32,
    path: &Path,
) -> anyhow::Result<Value> {
    let l = contacts.sites as usize;
    if contacts.matrix.len() != l * l {
        bail!("the server sent no contact matrix to draw");
    }
    let values: Vec<f64> = contacts.matrix.iter().map(|&x| x as f64).collect();
    let marked = if top == 0 { l } else { top as usize };
    let marks: Vec<(usize, usize)> = contacts
        .pairs
        .iter()
        .take(marked)
        .map(|p| (p.j as usize, p.i as usize))
        .collect();
    let (image, mut info) =
        picture::heat_map(l, l, &values, picture::ColourScale::Sequential, &marks)?;
    image.write(path)?;
    info["path"] = path.display().to_string().into();
    Ok(info)
}

fn print_contacts(printer: &Printer, contacts: &ebm_client::v1::Contacts, picture: Option<&Value>) {
    if printer.is_json() {
        let pairs: Vec<Value> = contacts
            .pairs
            .iter()
            .enumerate()
            .map(|(k, p)| {
                serde_json::json!({"rank": k + 1, "i": p.i, "j": p.j, "score": p.score, "frobenius": p.frobenius})
            })
            .collect();
        let mut doc = serde_json::json!({
            "model_id": contacts.model_id,
            "sites": contacts.sites,
            "q": contacts.q,
            "total_pairs": contacts.total_pairs,
            "pairs": pairs,
        });
        if let Some(p) = picture {
            doc["picture"] = p.clone();
        }
        printer.json(&doc);
        return;
    }
    println!("rank,i,j,score,frobenius");
    for (k, p) in contacts.pairs.iter().enumerate() {
        println!("{},{},{},{},{}", k + 1, p.i, p.j, p.score, p.frobenius);
    }
    if let Some(p) = picture {
        eprintln!(
            "contact map written to {}",
            p["path"].as_str().unwrap_or("")
        );
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
