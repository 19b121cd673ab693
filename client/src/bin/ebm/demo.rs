//! `ebm demo`: the guided tour. Uploads the bundled 8x8 handwritten digits (compiled into the
//! binary, so it works from any directory), trains a Bernoulli RBM with persistent contrastive
//! divergence through the real gRPC path, follows it with the progress bar, downloads the
//! model and shows what it learned: reconstruction error on held-out digits against two
//! baselines, and digits whose lower half the model fills in.
use crate::local_server::LocalServer;
use crate::output::Printer;
use crate::{follow, Cli};
use ebm_client::npy::{self, Matrix};
use ebm_client::rbm::{reconstruction_error, Rbm};
use ebm_client::{spec::parse_spec, v1::JobState, Client, ClientError, DatasetFormat};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

const DIGITS: &[u8] = include_bytes!("../../../../data/digits/digits_binarized.npy");
const LABELS: &[u8] = include_bytes!("../../../../data/digits/digits_labels.npy");
/// Digits kept out of training, to measure how well the model generalises.
const HELD_OUT: usize = 297;
const SIDE: usize = 8;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Training epochs.
    #[arg(long, default_value_t = 30)]
    epochs: u32,
    /// Hidden units of the RBM.
    #[arg(long, default_value_t = 64)]
    hidden: u32,
    /// Start an ebm-server (the one next to this binary) for the demo, and stop it after.
    #[arg(long)]
    start_server: bool,
    /// Data directory of the server that --start-server starts.
    #[arg(long, default_value = "ebm-data")]
    data_dir: PathBuf,
}

fn spec_toml(args: &DemoArgs) -> String {
    format!(
        r#"kind = "train"
name = "demo-digits-rbm"
seed = 7
[model]
type = "bernoulli_rbm"
hidden = {hidden}
[train]
method = "pcd"
k = 1
chains = 100
epochs = {epochs}
batch_size = 20
learning_rate = 0.05
optimizer = "sgd"
momentum = 0.5
checkpoint_every = 5
"#,
        hidden = args.hidden,
        epochs = args.epochs
    )
}

pub async fn run(cli: &Cli, args: &DemoArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let server = if args.start_server {
        Some(LocalServer::start(&args.data_dir, cli.token.clone()).await?)
    } else {
        None
    };
    let url = server
        .as_ref()
        .map_or(cli.server.clone(), |s| s.url.clone());
    let outcome = tour(&url, cli.token.clone(), args, printer).await;
    if let Some(server) = server {
        server.stop().await;
        if !printer.is_json() {
            println!(
                "\nThe demo server has stopped; its jobs, data and models stay in {}. \
                 Start it again with `ebm-server --data-dir {}` and look around with \
                 `ebm jobs list` or `ebm models list`.",
                args.data_dir.display(),
                args.data_dir.display()
            );
        }
    }
    outcome
}

async fn tour(
    url: &str,
    token: Option<String>,
    args: &DemoArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let text = !printer.is_json();
    let client = match Client::connect(url.to_string(), token).await {
        Ok(client) => client,
        Err(e @ ClientError::Unreachable { .. }) => anyhow::bail!(
            "{e}\nStart a server in another terminal (cargo run --release -p ebm-server), \
             or let the demo start one: ebm demo --start-server"
        ),
        Err(e) => return Err(e.into()),
    };
    let digits = npy::read(DIGITS)?;
    let train_rows = digits.rows - HELD_OUT;
    let train = digits.slice_rows(0..train_rows);
    let held_out = digits.slice_rows(train_rows..digits.rows);

    if text {
        println!(
            "The bundled data: {} handwritten digits, 8x8 pixels, black or white. Training on {}, \
             holding out {} to test what the model learned.\n",
            digits.rows, train_rows, HELD_OUT
        );
    }
    let dataset = client
        .upload_dataset_bytes("digits-train", DatasetFormat::Npy, npy::write_u8(&train))
        .await?;
    if text {
        println!(
            "uploaded data set {} ({} x {})",
            dataset.id, dataset.rows, dataset.cols
        );
    }
    let toml = spec_toml(args);
    let mut spec = parse_spec(&toml, &[])?.spec;
    spec.dataset = dataset.id.clone();
    let job = client.submit(spec, None).await?;
    if text {
        println!(
            "submitted job {} with this spec (see docs/job-spec.md):\n",
            job.id
        );
        for line in toml.lines() {
            println!("    {line}");
        }
        println!();
    }
    let job = follow::follow(&client, &job.id, text).await?;
    if job.state() != JobState::Succeeded {
        if text {
            println!("job {} {}: {}", job.id, job.state().name(), job.error);
        } else {
            printer.json(&json!({"error": {"kind": "job_not_succeeded", "message": job.error}, "job": ebm_api::json::job_json(&job)}));
        }
        return Ok(ExitCode::FAILURE);
    }
    let model_id = job
        .result
        .as_ref()
        .map(|r| r.model_id.clone())
        .unwrap_or_default();
    let model_bytes = client.download_model(&model_id).await?;
    let rbm = Rbm::from_safetensors(&model_bytes)?;
    let summary = Summary::measure(&rbm, &train, &held_out);
    if text {
        summary.print(&job.id, &model_id, model_bytes.len());
        let labels = npy::read(LABELS)?;
        let held_out_labels: Vec<f32> = (train_rows..digits.rows)
            .map(|i| labels.values[i])
            .collect();
        print_digits(&rbm, &held_out, &held_out_labels);
        println!(
            "\nNext: `ebm models download {model_id} -o digits.safetensors` gives you the \
             weights (W, b, c) for NumPy or PyTorch; `ebm jobs get {}` shows the job.",
            job.id
        );
    } else {
        printer.json(&json!({
            "dataset": dataset.id,
            "job": ebm_api::json::job_json(&job),
            "model_id": model_id,
            "held_out_reconstruction_error": {
                "untrained": summary.untrained,
                "independent_pixels": summary.independent,
                "trained": summary.trained,
            },
        }));
    }
    Ok(ExitCode::SUCCESS)
}

/// Held-out reconstruction errors (mean squared, per pixel) of the trained RBM and of two
/// baselines: an untrained RBM (all parameters zero: every pixel predicted at 0.5), and the
/// best model without hidden units (each pixel on with its training frequency).
struct Summary {
    untrained: f64,
    independent: f64,
    trained: f64,
}

impl Summary {
    fn measure(rbm: &Rbm, train: &Matrix, held_out: &Matrix) -> Summary {
        let rows: Vec<&[f32]> = (0..held_out.rows).map(|i| held_out.row(i)).collect();
        let marginals: Vec<f32> = (0..train.cols)
            .map(|j| (0..train.rows).map(|i| train.row(i)[j]).sum::<f32>() / train.rows as f32)
            .collect();
        Summary {
            untrained: reconstruction_error(|v| vec![0.5; v.len()], &rows),
            independent: reconstruction_error(|_| marginals.clone(), &rows),
            trained: reconstruction_error(|v| rbm.reconstruct(v), &rows),
        }
    }

    fn print(&self, job_id: &str, model_id: &str, bytes: usize) {
        println!(
            "\njob {job_id} succeeded; downloaded model {model_id} ({} bytes of safetensors)\n",
            bytes
        );
        println!(
            "Reconstruction error on the {HELD_OUT} held-out digits (mean squared, per pixel):"
        );
        println!(
            "    untrained RBM (every pixel 50/50)        {:.4}",
            self.untrained
        );
        println!(
            "    pixel frequencies only, no hidden units  {:.4}",
            self.independent
        );
        println!(
            "    trained RBM                              {:.4}",
            self.trained
        );
        println!(
            "The hidden units learned strokes that pixels share: the trained model reconstructs \
             unseen digits {:.1}x better than pixel frequencies alone.",
            self.independent / self.trained.max(1e-12)
        );
    }
}

/// Shows held-out digits, their reconstructions, and the lower half filled in by the model
/// from the upper half alone.
fn print_digits(rbm: &Rbm, held_out: &Matrix, labels: &[f32]) {
    // The first held-out example of six different digits.
    let picks: Vec<usize> = [0.0, 2.0, 3.0, 5.0, 7.0, 9.0]
        .iter()
        .filter_map(|&digit| labels.iter().position(|&l| l == digit))
        .collect();
    let known: Vec<bool> = (0..SIDE * SIDE).map(|i| i < SIDE * SIDE / 2).collect();
    let panels: Vec<(&str, Vec<Vec<f32>>)> = vec![
        (
            "held-out digits",
            picks.iter().map(|&i| held_out.row(i).to_vec()).collect(),
        ),
        (
            "reconstructed by the RBM",
            picks
                .iter()
                .map(|&i| rbm.reconstruct(held_out.row(i)))
                .collect(),
        ),
        (
            "lower half hidden",
            picks
                .iter()
                .map(|&i| {
                    let row = held_out.row(i);
                    (0..row.len())
                        .map(|p| if known[p] { row[p] } else { -1.0 })
                        .collect()
                })
                .collect(),
        ),
        (
            "lower half filled in by the RBM",
            picks
                .iter()
                .map(|&i| rbm.complete(held_out.row(i), &known, 30))
                .collect(),
        ),
    ];
    for (title, images) in panels {
        println!("\n{title}:");
        for y in 0..SIDE {
            let line: Vec<String> = images
                .iter()
                .map(|img| (0..SIDE).map(|x| shade(img[y * SIDE + x])).collect())
                .collect();
            println!("    {}", line.join("   "));
        }
    }
}

/// Two characters per pixel (terminal cells are about twice as tall as wide); negative means
/// hidden.
fn shade(p: f32) -> &'static str {
    match p {
        p if p < 0.0 => "··",
        p if p < 0.2 => "  ",
        p if p < 0.4 => "░░",
        p if p < 0.6 => "▒▒",
        p if p < 0.8 => "▓▓",
        _ => "██",
    }
}
