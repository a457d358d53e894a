use super::*;
use crate::monitor::features::FeatureSpec;
use crate::monitor::profile::ProfileBuilder;
use crate::monitor::test_support::Random;
use protocol::wire::FeatureSide;

/// A profile of a normal(10, 2) level and a four-class prediction spread evenly.
fn reference() -> Profile {
    let specs = [
        FeatureSpec { name: "level".into(), kind: FeatureKind::Continuous, side: FeatureSide::Input },
        FeatureSpec {
            name: "class".into(),
            kind: FeatureKind::Categorical { categories: 4 },
            side: FeatureSide::Output,
        },
    ];
    let mut builder = ProfileBuilder::new(&specs);
    let mut random = Random::new(11);
    for i in 0..5000 {
        builder.add(&[random.normal(10.0, 2.0) as f32, (i % 4) as f32]);
    }
    builder.build().expect("profile")
}

fn window_of(capacity: usize, mut vector: impl FnMut(usize) -> [f32; 2]) -> DriftWindow {
    let mut window = DriftWindow::new(2, capacity);
    for i in 0..capacity {
        window.push(&vector(i));
    }
    window
}

#[test]
fn the_heap_is_allocated_once_whatever_the_run_time() {
    let mut window = DriftWindow::new(20, 100);
    let at_start = window.heap_bytes();
    assert_eq!(at_start, 20 * 100 * 4);
    let vector: Vec<f32> = (0..20).map(|i| i as f32).collect();
    window.push(&vector);
    assert_eq!(window.heap_bytes(), at_start);
    for _ in 1..1_000_000 {
        window.push(&vector);
    }
    assert_eq!(window.heap_bytes(), at_start);
    assert_eq!(window.len(), 100);
}

#[test]
fn the_window_holds_the_last_vectors_only() {
    let mut window = DriftWindow::new(2, 10);
    assert!(window.is_empty());
    for i in 0..25 {
        window.push(&[i as f32, 0.0]);
    }
    assert!(window.is_full());
    let profile = reference();
    // The last ten: 15..=24.
    assert_eq!(window.evaluate(&profile)[0].mean, 19.5);
    window.clear();
    assert!(window.is_empty());
    window.push(&[3.0, 1.0]);
    assert_eq!(window.len(), 1);
    assert_eq!(window.evaluate(&profile)[0].mean, 3.0);
}

#[test]
fn a_window_like_the_reference_does_not_drift() {
    let profile = reference();
    let mut random = Random::new(99);
    let window = window_of(500, |i| [random.normal(10.0, 2.0) as f32, (i % 4) as f32]);
    let [level, class] = <[FeatureStats; 2]>::try_from(window.evaluate(&profile)).expect("two features");
    assert!(level.psi < 0.1, "{level:?}");
    let ks = level.ks.expect("continuous: KS");
    assert!(ks.p_value > 0.01, "{ks:?}");
    assert!((ks.effective_n - 500.0 * 5000.0 / 5500.0).abs() < 1e-9);
    assert!(level.js_distance.is_none());
    assert!(class.psi < 1e-9 && class.js_distance.expect("categorical: JS") < 1e-9, "{class:?}");
    assert!(class.ks.is_none());
}

#[test]
fn shifted_values_and_a_dominant_class_drift() {
    let profile = reference();
    let mut random = Random::new(5);
    let window = window_of(200, |i| [random.normal(12.0, 2.0) as f32, if i % 10 == 0 { 1.0 } else { 3.0 }]);
    let [level, class] = <[FeatureStats; 2]>::try_from(window.evaluate(&profile)).expect("two features");
    assert!(level.psi > 0.25, "{level:?}");
    assert!(level.ks.expect("KS").p_value < 1e-6, "{level:?}");
    assert!((level.mean - 12.0).abs() < 0.5, "{level:?}");
    assert!(class.psi > 0.25, "{class:?}");
    assert!(class.js_distance.expect("JS") > 0.4, "{class:?}");
    assert_eq!(class.mean, 3.0);
}

#[test]
fn an_empty_window_shows_no_drift() {
    let stats = DriftWindow::new(2, 10).evaluate(&reference());
    assert!(stats.iter().all(|s| s.psi == 0.0 && s.mean == 0.0), "{stats:?}");
    assert_eq!(stats[0].ks.expect("KS").p_value, 1.0);
    assert_eq!(stats[1].js_distance, Some(0.0));
}
