//! Expanding a sweep's grid: the cartesian product of the value lists (in the order the
//! fields were given, the last field changing fastest), times `seeds` copies with seeds
//! base, base + 1, ... (innermost). Each variant is the base spec with the grid's fields set
//! through the same dotted names as the CLI's `--set` (`ebm_api::spec_path`), and carries
//! one label per grid field (plus `seed=N` with seeds). Refusals name the field.
use super::labels::{check_label, SEED_KEY, SWEEP_KEY};
use crate::config::Limits;
use crate::store::Labels;
use ebm_api::spec_path;
use ebm_api::v1::{GridAxis, JobSpec};
use serde_json::Value;
use tonic::Status;

/// One variant: its spec, and the labels that say where it sits in the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub spec: JobSpec,
    pub labels: Labels,
}

/// A grid value as a label value: strings without their quotes, anything else as JSON.
fn label_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks the grid and expands it into the variants (without the sweep label).
pub fn expand(
    base: &JobSpec,
    grid: &[GridAxis],
    seeds: u32,
    limits: &Limits,
) -> Result<Vec<Variant>, Status> {
    if grid.is_empty() && seeds == 0 {
        return Err(Status::invalid_argument(
            "a sweep needs at least one grid field (--grid FIELD=[v1,v2]) or --seeds N",
        ));
    }
    let mut axes: Vec<(&str, Vec<Value>)> = Vec::with_capacity(grid.len());
    for axis in grid {
        let field = axis.field.trim();
        if field.len() > limits.max_label_len {
            return Err(Status::invalid_argument(format!(
                "grid field name {field:?} is longer than {} bytes (limits.max_label_len)",
                limits.max_label_len
            )));
        }
        spec_path::resolve(field)
            .map_err(|e| Status::invalid_argument(format!("grid field `{field}`: {e}")))?;
        if axes.iter().any(|(f, _)| *f == field) {
            return Err(Status::invalid_argument(format!(
                "grid field `{field}` is given twice: list all its values once"
            )));
        }
        if field == SEED_KEY && seeds > 0 {
            return Err(Status::invalid_argument(
                "grid field `seed` and --seeds both set the seed: use one of them",
            ));
        }
        if field == SWEEP_KEY {
            return Err(Status::invalid_argument("`sweep` cannot be a grid field"));
        }
        if axis.values.is_empty() {
            return Err(Status::invalid_argument(format!(
                "grid field `{field}` has an empty value list: give at least one value, e.g. {field}=[v1,v2]"
            )));
        }
        if axis.values.len() > limits.max_sweep_variants as usize {
            return Err(too_many(grid, seeds, limits));
        }
        let mut values = Vec::with_capacity(axis.values.len());
        for text in &axis.values {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                Status::invalid_argument(format!(
                    "grid field `{field}`: value {text:?} is not JSON text ({e})"
                ))
            })?;
            check_label(field, &label_text(&value), limits).map_err(|e| {
                Status::invalid_argument(format!("grid field `{field}`: {}", e.message()))
            })?;
            values.push(value);
        }
        axes.push((field, values));
    }
    let count = axes
        .iter()
        .try_fold(u64::from(seeds.max(1)), |n, (_, v)| {
            n.checked_mul(v.len() as u64)
        })
        .filter(|n| *n <= u64::from(limits.max_sweep_variants))
        .ok_or_else(|| too_many(grid, seeds, limits))?;
    let mut variants = Vec::with_capacity(count as usize);
    for index in 0..count {
        let mut rest = index;
        let seed_offset = if seeds > 0 {
            let s = rest % u64::from(seeds);
            rest /= u64::from(seeds);
            Some(s)
        } else {
            None
        };
        // Mixed radix, last field fastest: pick each field's value from the right.
        let mut picks = vec![0usize; axes.len()];
        for (i, (_, values)) in axes.iter().enumerate().rev() {
            picks[i] = (rest % values.len() as u64) as usize;
            rest /= values.len() as u64;
        }
        let mut spec = base.clone();
        let mut labels = Labels::new();
        for ((field, values), pick) in axes.iter().zip(picks) {
            let value = &values[pick];
            spec = spec_path::set_field(&spec, field, value)
                .map_err(|e| Status::invalid_argument(format!("grid field `{field}`: {e}")))?;
            labels.insert(field.to_string(), label_text(value));
        }
        if let Some(offset) = seed_offset {
            spec.seed = base.seed.checked_add(offset).ok_or_else(|| {
                Status::invalid_argument("seed + --seeds overflows a 64-bit seed")
            })?;
            labels.insert(SEED_KEY.to_string(), spec.seed.to_string());
        }
        variants.push(Variant { spec, labels });
    }
    Ok(variants)
}

fn too_many(grid: &[GridAxis], seeds: u32, limits: &Limits) -> Status {
    let mut factors: Vec<String> = grid
        .iter()
        .map(|a| format!("{} ({} values)", a.field.trim(), a.values.len()))
        .collect();
    if seeds > 0 {
        factors.push(format!("{seeds} seeds"));
    }
    Status::resource_exhausted(format!(
        "the sweep {} has more variants than the limit of {} (limits.max_sweep_variants): \
         use fewer values or seeds, or split it into several sweeps",
        factors.join(" x "),
        limits.max_sweep_variants
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(field: &str, values: &[&str]) -> GridAxis {
        GridAxis {
            field: field.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn expands_the_product_last_field_fastest_seeds_innermost() {
        let base = JobSpec {
            kind: "train".into(),
            seed: 7,
            ..Default::default()
        };
        let grid = [
            axis("train.learning_rate", &["0.01", "0.05"]),
            axis("model.hidden", &["64", "256"]),
        ];
        let variants = expand(&base, &grid, 2, &Limits::default()).unwrap();
        assert_eq!(variants.len(), 8);
        let row = |v: &Variant| {
            (
                v.spec.train.as_ref().unwrap().learning_rate.unwrap(),
                v.spec.model_config.as_ref().unwrap().hidden.unwrap(),
                v.spec.seed,
            )
        };
        assert_eq!(row(&variants[0]), (0.01, 64, 7));
        assert_eq!(row(&variants[1]), (0.01, 64, 8));
        assert_eq!(row(&variants[2]), (0.01, 256, 7));
        assert_eq!(row(&variants[7]), (0.05, 256, 8));
        assert_eq!(variants[7].labels["train.learning_rate"], "0.05");
        assert_eq!(variants[7].labels["model.hidden"], "256");
        assert_eq!(variants[7].labels["seed"], "8");
        let methods = expand(
            &base,
            &[axis("train.method", &["\"cd\""])],
            0,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(methods[0].labels["train.method"], "cd");
        assert!(!methods[0].labels.contains_key("seed"));
    }

    #[test]
    fn refuses_bad_grids_naming_the_field() {
        let base = JobSpec::default();
        let limits = Limits {
            max_sweep_variants: 4,
            ..Limits::default()
        };
        let refused =
            |grid: &[GridAxis], seeds: u32| expand(&base, grid, seeds, &limits).unwrap_err();
        let e = refused(&[axis("train.learnin_rate", &["1"])], 0);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("train.learnin_rate"),
            "{}",
            e.message()
        );
        let e = refused(&[axis("model.hidden", &[])], 0);
        assert!(e.message().contains("model.hidden") && e.message().contains("empty"));
        let e = refused(&[axis("model.hidden", &["1", "2", "3"])], 2);
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("model.hidden") && e.message().contains("max_sweep_variants"));
        let e = refused(&[axis("model.hidden", &["\"many\""])], 0);
        assert!(e.message().contains("model.hidden"), "{}", e.message());
        let e = refused(&[axis("seed", &["1"])], 2);
        assert!(e.message().contains("seed"));
        assert!(refused(&[], 0).message().contains("--grid"));
        let e = refused(&[axis("seed", &["1"]), axis("seed", &["2"])], 0);
        assert!(
            e.message().contains("`seed` is given twice"),
            "{}",
            e.message()
        );
    }
}
