use super::*;
use crate::monitor::FeatureExtractor;
use crate::monitor::test_support::{BUNDLES, Random, fixture, numbers, shipped};
use crate::monitor::window::DriftWindow;
use protocol::wire::FeatureSide;

fn continuous(name: &str) -> FeatureSpec {
    FeatureSpec { name: name.to_owned(), kind: FeatureKind::Continuous, side: FeatureSide::Input }
}

fn categorical(name: &str, categories: u32) -> FeatureSpec {
    FeatureSpec { name: name.to_owned(), kind: FeatureKind::Categorical { categories }, side: FeatureSide::Output }
}

fn build(specs: &[FeatureSpec], vectors: impl IntoIterator<Item = Vec<f32>>) -> Profile {
    let mut builder = ProfileBuilder::new(specs);
    for vector in vectors {
        builder.add(&vector);
    }
    builder.build().expect("profile")
}

/// A profile of a normal `level`, a constant 5 and a three-class prediction.
fn sample_profile() -> (Vec<FeatureSpec>, Profile) {
    let specs = vec![continuous("level"), continuous("constant"), categorical("class", 3)];
    let mut random = Random::new(7);
    let vectors: Vec<Vec<f32>> =
        (0..500).map(|i| vec![random.normal(10.0, 2.0) as f32, 5.0, (i % 4).min(2) as f32]).collect();
    let profile = build(&specs, vectors);
    (specs, profile)
}

#[test]
fn quantiles_match_numpy() {
    for case in fixture("quantiles") {
        let name = case["name"].as_str().expect("name");
        let mut values = numbers(&case, "values");
        values.sort_by(f64::total_cmp);
        for (key, points) in [("deciles", 10.0), ("quantiles", 100.0)] {
            let expected = numbers(&case, key);
            let offset = if key == "deciles" { 1 } else { 0 };
            for (i, expected) in expected.iter().enumerate() {
                let p = (i + offset) as f64 / points;
                let ours = quantile(&values, p);
                assert!((ours - expected).abs() <= 1e-9, "{name}: {key} at {p}: {ours} vs numpy {expected}");
            }
        }
    }
}

#[test]
fn a_continuous_feature_has_decile_bins_and_a_quantile_grid() {
    let (_, profile) = sample_profile();
    let level = &profile.features[0];
    assert_eq!(profile.size, 500);
    assert_eq!(level.edges.len(), 9);
    assert_eq!(level.proportions.len(), 10);
    assert!(level.proportions.iter().all(|share| (share - 0.1).abs() < 0.003), "{:?}", level.proportions);
    assert_eq!(level.quantiles.len(), 101);
    assert!((level.mean - 10.0).abs() < 0.3 && (level.std - 2.0).abs() < 0.2, "{} {}", level.mean, level.std);
}

#[test]
fn a_constant_feature_still_shows_any_change() {
    let (_, profile) = sample_profile();
    let constant = &profile.features[1];
    assert_eq!(constant.edges, [5.0, f64::from(5.0f32.next_up())]);
    assert_eq!(constant.proportions, [0.0, 1.0, 0.0]);
    assert!(constant.quantiles.iter().all(|q| *q == 5.0));
    assert_eq!((constant.mean, constant.std), (5.0, 0.0));
    let evaluate = |value: f32| {
        let mut window = DriftWindow::new(1, 50);
        (0..50).for_each(|_| window.push(&[value]));
        let single = Profile { version: 1, size: profile.size, features: vec![constant.clone()] };
        window.evaluate(&single).remove(0)
    };
    let same = evaluate(5.0);
    assert_eq!((same.psi, same.ks.expect("ks").statistic), (0.0, 0.0));
    for moved in [5.0f32.next_up(), 5.01, 4.99] {
        let stats = evaluate(moved);
        assert!(stats.psi > 9.0, "{moved}: {stats:?}");
        assert_eq!(stats.ks.expect("ks").statistic, 1.0, "{moved}");
    }
}

#[test]
fn a_point_mass_at_the_top_gets_a_bin_above_it() {
    // Detections per frame: mostly one face, sometimes none; two never seen in the reference. numpy's 0.2
    // decile interpolates between the last 0 and the first 1.
    let profile = build(&[continuous("detections")], (0..100).map(|i| vec![if i % 5 == 0 { 0.0 } else { 1.0 }]));
    let detections = &profile.features[0];
    assert_eq!(detections.edges, [0.0, f64::from(0.8f32), 1.0, f64::from(1.0f32.next_up())]);
    assert_eq!(detections.proportions, [0.0, f64::from(0.2f32), 0.0, f64::from(0.8f32), 0.0]);
}

#[test]
fn a_categorical_feature_has_a_share_per_category_and_its_mode_as_mean() {
    let (_, profile) = sample_profile();
    let class = &profile.features[2];
    assert!(class.edges.is_empty() && class.quantiles.is_empty());
    assert_eq!(class.proportions, [0.25, 0.25, 0.5]);
    assert_eq!(class.mean, 2.0);
}

#[test]
fn a_profile_reads_back_as_written() {
    let (specs, profile) = sample_profile();
    let json = profile.to_json();
    assert_eq!(json.lines().count(), 2 + specs.len(), "one line per feature:\n{json}");
    assert_eq!(Profile::parse(&json, &specs).expect("parses"), profile);
}

#[test]
fn nothing_to_profile_is_an_error() {
    let err = ProfileBuilder::new(&[continuous("level")]).build().expect_err("empty");
    assert!(err.to_string().contains("no reference inputs"), "{err}");
}

/// A change to a profile's JSON.
type Edit = fn(&mut serde_json::Value);

#[test]
fn parse_names_the_feature_and_what_is_wrong() {
    let (specs, profile) = sample_profile();
    let json: serde_json::Value = serde_json::from_str(&profile.to_json()).expect("JSON");
    let broken = |edit: Edit| {
        let mut json = json.clone();
        edit(&mut json);
        Profile::parse(&json.to_string(), &specs).expect_err("refused").to_string()
    };
    let cases: Vec<(&str, Edit)> = vec![
        ("version 2 is not supported", |j| j["version"] = 2.into()),
        ("`size` is 0", |j| j["size"] = 0.into()),
        ("2 features [level, constant], but the model has 3", |j| j["features"].as_array_mut().unwrap().truncate(2)),
        ("feature 1 is `other`, the model's is `constant`", |j| j["features"][1]["name"] = "other".into()),
        ("feature `class`: kind is Continuous", |j| j["features"][2]["kind"] = "continuous".into()),
        ("feature `level`: `edges` are not strictly ascending at index 3", |j| {
            j["features"][0]["edges"][3] = j["features"][0]["edges"][2].clone()
        }),
        ("feature `level`: `proportions` sum to", |j| j["features"][0]["proportions"][0] = 0.2.into()),
        ("feature `level`: 9 `proportions` for 10 bins", |j| {
            j["features"][0]["proportions"].as_array_mut().unwrap().pop();
        }),
        ("feature `constant`: `proportions[0]` is -0.5", |j| j["features"][1]["proportions"][0] = (-0.5).into()),
        ("feature `level`: 100 `quantiles`, expected 101", |j| {
            j["features"][0]["quantiles"].as_array_mut().unwrap().pop();
        }),
        ("feature `level`: `quantiles` decrease at index 1", |j| j["features"][0]["quantiles"][0] = 99.into()),
        ("feature `level`: `std` is negative", |j| j["features"][0]["std"] = (-1.0).into()),
        ("feature `level`: `mean` has a non-finite value", |j| j["features"][0]["mean"] = 1e300.into()),
        ("feature `class`: a categorical feature has no `edges`", |j| j["features"][2]["edges"] = vec![1.0].into()),
        ("feature `class`: 2 `proportions` for 3 bins", |j| j["features"][2]["proportions"] = vec![0.5, 0.5].into()),
        ("unknown field `bins`", |j| j["features"][0]["bins"] = 3.into()),
    ];
    for (expected, edit) in cases {
        let message = broken(edit);
        assert!(message.starts_with("profile profile.json: "), "{message}");
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
}

#[test]
fn shipped_models_have_profiles_of_a_few_kilobytes() {
    let mut random = Random::new(3);
    for bundle in BUNDLES {
        let (manifest, labels) = shipped(bundle);
        let specs = FeatureExtractor::new(&manifest, &labels).specs().to_vec();
        let vectors = (0..2000).map(|_| {
            specs
                .iter()
                .map(|spec| match spec.kind {
                    FeatureKind::Continuous => random.normal(100.0, 30.0) as f32,
                    FeatureKind::Categorical { categories } => {
                        (random.uniform() * f64::from(categories)).floor() as f32
                    }
                })
                .collect::<Vec<f32>>()
        });
        let json = build(&specs, vectors.collect::<Vec<_>>()).to_json();
        println!("{bundle}: {} features, {} bytes", specs.len(), json.len());
        assert!(json.len() < 32 * 1024, "{bundle}: {} bytes", json.len());
        Profile::parse(&json, &specs).expect("parses");
    }
}
