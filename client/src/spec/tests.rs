//! Tests of the job-spec parser: the DESIGN.md examples, overrides, and the errors.
use super::*;

const TRAIN: &str = r#"
kind = "train"                 # train | estimate_log_z | sample | observe
name = "digits-rbm"
seed = 7
dataset = "ds_1"
[model]
type = "bernoulli_rbm"
hidden = 64
[train]
method = "pcd"
k = 1
chains = 100
epochs = 20
batch_size = 100
learning_rate = 0.05
optimizer = "sgd"
momentum = 0.5
l2 = 0.0
checkpoint_every = 1
"#;

fn err(text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    parse_spec(text, &overrides).unwrap_err().to_string()
}

#[test]
fn parses_the_design_train_example() {
    let parsed = parse_spec(TRAIN, &[]).unwrap();
    let spec = parsed.spec;
    assert_eq!(parsed.dataset_path, None);
    assert_eq!(
        (spec.kind.as_str(), spec.name.as_str(), spec.seed),
        ("train", "digits-rbm", 7)
    );
    assert_eq!(spec.dataset, "ds_1");
    let model = spec.model_config.unwrap();
    assert_eq!(
        (model.r#type.as_str(), model.hidden),
        ("bernoulli_rbm", Some(64))
    );
    let train = spec.train.unwrap();
    assert_eq!(train.method, "pcd");
    assert_eq!(
        (train.k, train.chains, train.epochs),
        (Some(1), Some(100), Some(20))
    );
    assert_eq!(train.learning_rate, Some(0.05));
    assert_eq!(train.l2, Some(0.0));
    assert_eq!(train.l1, None, "unset options stay unset (server defaults)");
}

#[test]
fn parses_estimate_and_observe_examples() {
    let spec = parse_spec(
        "kind = \"estimate_log_z\"\nmodel = \"mdl_9\"\n[estimate]\nmethod = \"ais\"\nchains = 100\nbetas = 10000\n",
        &[],
    )
    .unwrap()
    .spec;
    assert_eq!(spec.model, "mdl_9");
    assert!(spec.model_config.is_none());
    let estimate = spec.estimate.unwrap();
    assert_eq!(
        (estimate.method.as_str(), estimate.betas),
        ("ais", Some(10000))
    );

    let spec = parse_spec(
        "kind = \"observe\"\nmodel = \"mdl_9\"\n[observe]\nstatistic = \"hamming_to\"\nreference = [0, 1, 1]\nbins = 65\n",
        &[],
    )
    .unwrap()
    .spec;
    let observe = spec.observe.unwrap();
    assert_eq!(observe.reference, vec![0.0, 1.0, 1.0]);
    assert_eq!(observe.bins, Some(65));
}

#[test]
fn overrides_set_nested_values_as_toml() {
    let overrides: Vec<String> = [
        "train.epochs=5",
        "train.learning_rate = 1e-3",
        "name=other",
        "model.hidden=16",
        "train.betas=[0.25, 0.5, 1.0]",
        "backend=\"wgpu\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let spec = parse_spec(TRAIN, &overrides).unwrap().spec;
    let train = spec.train.unwrap();
    assert_eq!(train.epochs, Some(5));
    assert_eq!(train.learning_rate, Some(1e-3));
    assert_eq!(train.betas, vec![0.25, 0.5, 1.0]);
    assert_eq!(spec.name, "other");
    assert_eq!(spec.backend, "wgpu");
    assert_eq!(spec.model_config.unwrap().hidden, Some(16));
}

#[test]
fn overrides_create_missing_sections() {
    let spec = parse_spec(
        "kind = \"sample\"\nmodel = \"mdl_1\"",
        &["sample.samples=10".into()],
    )
    .unwrap()
    .spec;
    assert_eq!(spec.sample.unwrap().samples, Some(10));
}

#[test]
fn dataset_path_is_returned_for_upload() {
    let parsed = parse_spec(
        "kind = \"train\"\ndataset_path = \"data/x.npy\"\n[model]\ntype = \"bernoulli_rbm\"",
        &[],
    )
    .unwrap();
    assert_eq!(parsed.dataset_path.as_deref(), Some("data/x.npy"));
    assert!(parsed.spec.dataset.is_empty());
    let e = err(
        "kind = \"train\"\ndataset = \"ds_1\"\ndataset_path = \"x.npy\"",
        &[],
    );
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn non_finite_values_pass_through_for_the_server_to_judge() {
    let spec = parse_spec(TRAIN, &["train.learning_rate=nan".into()])
        .unwrap()
        .spec;
    assert!(spec.train.unwrap().learning_rate.unwrap().is_nan());
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let e = err(TRAIN, &["train.epoch=3"]);
    assert!(e.contains("unknown key `train.epoch`"), "{e}");
    assert!(e.contains("did you mean `train.epochs`?"), "{e}");
    let e = err("kind = \"train\"\nseeed = 1", &[]);
    assert!(e.contains("unknown key `seeed`"), "{e}");
    assert!(e.contains("did you mean `seed`?"), "{e}");
    let e = err(TRAIN, &["model.hiden=3"]);
    assert!(e.contains("unknown key `model.hiden`"), "{e}");
    assert!(e.contains("`model.hidden`"), "{e}");
    let e = err("kind = \"train\"\n[trian]\nepochs = 1", &[]);
    assert!(e.contains("unknown key `trian`"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = err(TRAIN, &["train.epochs=-1"]);
    assert!(e.contains("`train.epochs`"), "{e}");
    let e = err(TRAIN, &["train.epochs=\"many\""]);
    assert!(e.contains("`train.epochs`"), "{e}");
    let e = err(TRAIN, &["model.hidden=2.5"]);
    assert!(e.contains("`model.hidden`"), "{e}");
    let e = err("kind = \"train\"\ntrain = 3", &[]);
    assert!(e.contains("`train` must be a table"), "{e}");
    let e = err("kind = \"train\"\nmodel = 3", &[]);
    assert!(e.contains("`model` must be a model id"), "{e}");
}

#[test]
fn kind_is_required_and_checked() {
    assert!(err("name = \"x\"", &[]).contains("needs `kind`"));
    let e = err("kind = \"fit\"", &[]);
    assert!(e.contains("unknown job kind \"fit\""), "{e}");
}

#[test]
fn malformed_input_is_reported() {
    assert!(err("kind = ", &[]).contains("not valid TOML"));
    assert!(err(TRAIN, &["epochs"]).contains("expected key=value"));
    let e = err(TRAIN, &["kind.x=1"]);
    assert!(e.contains("`kind` is a string, not a table"), "{e}");
}
