//! The flashable packages (`scripts/package.sh`): the Debian package installs into a fresh root directory with
//! its maintainer scripts (`dpkg --root --force-script-chrootless`), and the agent from that tree finds the
//! ONNX Runtime beside it, loads the starter bundle and answers `run --check`; an upgrade keeps the edited
//! config and the installed models; the tarball runs in place.
//!
//! `cargo test --workspace` does not build this test (it needs the `arm-artifacts` feature: the packages are
//! not built there). `scripts/test-arm.sh`
//! builds them and runs:
//! ```sh
//! EDGE_PACKAGE_DIR=target/package cargo test -p integration-tests --features arm-artifacts --test package
//! ```
//! Run that way, missing packages fail the tests with what to build; nothing is skipped.

use integration_tests::repo_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STARTER: &str = "activity-classifier";

/// The agent's package of `arch` (`edge-agent_<version>_<arch>.deb` or `edge-agent-<version>-<arch>.tar.gz`).
fn package(arch: &str, deb: bool) -> PathBuf {
    named_package("edge-agent", arch, deb)
}

/// The package `name` of `arch` (`<name>_<version>_<arch>.deb` or `<name>-<version>-<arch>.tar.gz`).
fn named_package(package: &str, arch: &str, deb: bool) -> PathBuf {
    let dir = std::env::var_os("EDGE_PACKAGE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("EDGE_PACKAGE_DIR is not set: it names the directory scripts/package.sh fills (target/package). Run scripts/test-arm.sh")
    });
    let dir = if dir.is_absolute() { dir } else { repo_root().join(dir) };
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/package.sh {arch}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if deb {
                name.starts_with(&format!("{package}_")) && name.ends_with(&format!("_{arch}.deb"))
            } else {
                name.starts_with(&format!("{package}-")) && name.ends_with(&format!("-{arch}.tar.gz"))
            }
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {arch} package in {} expected (run scripts/package.sh {arch}): {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// An empty root with a dpkg database.
fn fresh_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "").unwrap();
    root
}

/// `dpkg -i` into `root`, maintainer scripts included (run outside a chroot, with `DPKG_ROOT` set). Only the
/// checks that need a whole system are forced: dependencies (libc6, libstdc++6, adduser are not in the empty
/// root), the architecture (arm64 here), root privileges and the PATH of a real system.
fn dpkg_install(root: &Path, deb: &Path) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-architecture",
            "--force-not-root",
            "--force-bad-path",
            "--force-confdef",
            "--force-confold",
            "--log=/dev/null",
            "-i",
        ])
        .arg(deb))
}

/// The installed config with its absolute paths moved into `root`.
fn config_in(root: &Path, dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(root.join("etc/edge-agent/agent.toml")).expect("the default config is installed");
    assert!(
        text.contains(&format!("/var/lib/edge-agent/models/{STARTER}")),
        "the default config runs the starter bundle"
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text.replace("/var/lib/edge-agent", &root.join("var/lib/edge-agent").display().to_string()))
        .unwrap();
    path
}

/// `device-agent run --check` through `/usr/bin/device-agent` of the tree, with no ONNX Runtime path given:
/// the library must be found beside the (symlink-resolved) executable.
fn check(root: &Path, arch: &str, config: &Path) -> String {
    let agent = root.join("usr/bin/device-agent");
    let mut command = if arch == "amd64" {
        Command::new(&agent)
    } else {
        let mut c = Command::new(repo_root().join("cross/qemu-run.sh"));
        // Set and empty: the runner passes no ORT_DYLIB_PATH.
        c.arg(&agent).env("EDGE_ORT_AARCH64", "");
        c
    };
    command.args(["run", "--check", "--config"]).arg(config).env_remove("ORT_DYLIB_PATH").env("RUST_LOG", "info");
    let output = run(&mut command);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains(&format!("source imu: {STARTER} 1.0.0 on cpu")), "{arch}: {stdout}");
    assert!(stdout.contains("is valid"), "{arch}: {stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty() || !stderr.contains("ERROR"), "{arch}: {stderr}");
    stdout
}

fn installs_and_checks(arch: &str) {
    let deb = package(arch, true);
    let root = fresh_root();
    dpkg_install(root.path(), &deb);
    let r = root.path();

    // Layout: the agent and ONNX Runtime side by side, the command on PATH, the unit, the conffile.
    let binary = r.join("usr/lib/edge-agent/device-agent");
    let size = std::fs::metadata(&binary).expect("the agent is installed").len();
    if arch == "arm64" {
        // The budget cross/build.sh holds the agent to (docs/arm-and-packages.md).
        assert!(size < 8_000_000, "the stripped aarch64 agent is {size} bytes, over 8 MB");
    }
    assert!(r.join("usr/lib/edge-agent/libonnxruntime.so.1").is_file(), "ONNX Runtime beside the agent");
    assert_eq!(
        std::fs::read_link(r.join("usr/bin/device-agent")).unwrap(),
        Path::new("../lib/edge-agent/device-agent")
    );
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/edge-agent.service")).expect("systemd unit");
    for line in [
        "User=edge-agent",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/edge-agent",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/lib/edge-agent/device-agent run --config /etc/edge-agent/agent.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line}:\n{unit}");
    }
    let status = std::fs::read_to_string(r.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("Conffiles:\n /etc/edge-agent/agent.toml "), "the config is a conffile: {status}");
    // postinst copied the starter bundle into the state directory.
    for file in ["manifest.toml", "model.onnx", "labels.txt"] {
        assert!(
            r.join("var/lib/edge-agent/models").join(STARTER).join(file).is_file(),
            "postinst installs {STARTER}/{file}"
        );
    }
    assert!(r.join("var/lib/edge-agent/spool").is_dir());
    assert!(r.join("usr/share/man/man1/device-agent.1.gz").is_file(), "the man page");
    assert!(r.join("usr/share/man/man1/device-agent-run.1.gz").is_file(), "the man page of `run`");
    assert!(r.join("usr/share/bash-completion/completions/device-agent").is_file(), "bash completions");
    assert!(!r.join("usr/bin/edgectl").exists(), "the operator's tool is a package of its own");

    let work = tempfile::tempdir().unwrap();
    check(r, arch, &config_in(r, work.path()));
}

#[test]
fn amd64_deb_installs_into_a_fresh_root_and_checks() {
    installs_and_checks("amd64");
}

#[test]
fn arm64_deb_installs_into_a_fresh_root_and_checks_under_qemu() {
    installs_and_checks("arm64");
}

/// The operator's package installs `edgectl` alone, with its man pages and completions; the agent's commands
/// are not in it.
#[test]
fn amd64_operator_deb_installs_edgectl_alone() {
    let root = fresh_root();
    dpkg_install(root.path(), &named_package("edge-operator", "amd64", true));
    let r = root.path();
    let output = run(Command::new(r.join("usr/bin/edgectl")).arg("--help"));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("keygen") && help.contains("model"), "{help}");
    assert!(!r.join("usr/lib/edge-agent").exists(), "no agent in the operator's package");
    for page in ["edgectl.1.gz", "edgectl-model-push.1.gz"] {
        assert!(r.join("usr/share/man/man1").join(page).is_file(), "{page}");
    }
    assert!(r.join("usr/share/zsh/vendor-completions/_edgectl").is_file(), "zsh completions");
}

/// An upgrade to a newer version keeps the edited config (a conffile) and the installed models (a newer
/// starter in the package never overwrites the device's).
#[test]
fn upgrade_keeps_the_config_and_the_installed_models() {
    let deb = package("amd64", true);
    let root = fresh_root();
    let r = root.path();
    dpkg_install(r, &deb);

    // The operator edits the config and replaces the model's labels; a second bundle is deployed.
    let config = r.join("etc/edge-agent/agent.toml");
    let edited =
        std::fs::read_to_string(&config).unwrap().replace("device_id = \"edge-device\"", "device_id = \"pi-kitchen\"");
    assert!(edited.contains("pi-kitchen"));
    std::fs::write(&config, &edited).unwrap();
    let labels = r.join("var/lib/edge-agent/models").join(STARTER).join("labels.txt");
    std::fs::write(&labels, "still\nwalk\nrun\nplay\n").unwrap();
    let deployed = r.join("var/lib/edge-agent/models/deployed-model");
    std::fs::create_dir_all(&deployed).unwrap();
    std::fs::write(deployed.join("manifest.toml"), "# deployed by the fleet\n").unwrap();

    // The next version of the package, with a different default config and starter.
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let version = text.lines().find_map(|l| l.strip_prefix("Version: ")).expect("version").to_owned();
    std::fs::write(&control, text.replace(&format!("Version: {version}"), &format!("Version: {version}+next1")))
        .unwrap();
    let new_default = tree.join("etc/edge-agent/agent.toml");
    let mut default = std::fs::read_to_string(&new_default).unwrap();
    default.push_str("\n# a new default in the next version\n");
    std::fs::write(&new_default, default).unwrap();
    std::fs::write(tree.join("usr/share/edge-agent/models").join(STARTER).join("labels.txt"), "a\nb\nc\nd\n").unwrap();
    let next = work.path().join("next.deb");
    run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&tree).arg(&next));

    dpkg_install(r, &next);
    let status = std::fs::read_to_string(r.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains(&format!("Version: {version}+next1")), "upgraded: {status}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited, "the edited config is kept");
    assert!(r.join("etc/edge-agent/agent.toml.dpkg-dist").is_file(), "the new default is set beside it");
    assert_eq!(std::fs::read_to_string(&labels).unwrap(), "still\nwalk\nrun\nplay\n", "the installed model is kept");
    assert!(deployed.join("manifest.toml").is_file(), "other installed models are kept");
    // The upgraded tree still runs: the edited labels are a valid bundle.
    check(r, "amd64", &config_in(r, work.path()));
}

/// The tarball is a directory that runs in place: config paths relative to it, ONNX Runtime beside the agent.
#[test]
fn amd64_tarball_runs_in_place() {
    let tarball = package("amd64", false);
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(dir.path()));
    let name = tarball.file_name().unwrap().to_string_lossy().trim_end_matches(".tar.gz").to_owned();
    let tree = dir.path().join(name);
    let elsewhere = tempfile::tempdir().unwrap();
    let output = run(Command::new(tree.join("device-agent"))
        .args(["run", "--check", "--config"])
        .arg(tree.join("agent.toml"))
        .current_dir(elsewhere.path())
        .env_remove("ORT_DYLIB_PATH"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("source imu: {STARTER} 1.0.0 on cpu")), "{stdout}");
}
