//! The agent's OCI image, built by `cross/image.sh` from this build's agent, and podman set up to run it: as root
//! on Debian 12, runc with cgroupfs and no default rlimits (crun fails on both in containers such as CI's). The
//! image, and every container and volume made through [`Image::podman`] with a name from [`Image::name`], are
//! removed when the image is dropped.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A freshly built image of the agent, with its own name.
pub struct Image {
    tag: String,
    /// `containers.conf` for every podman call.
    conf: tempfile::TempDir,
    /// Containers and volumes to remove with the image.
    names: Vec<String>,
}

impl Image {
    /// Builds the image from the agent of this build (`cargo build -p device-agent`) and [`crate::ort_library`].
    /// Panics, saying what to install, when podman, buildah or runc is missing.
    pub fn build() -> Image {
        for tool in ["podman", "buildah", "runc"] {
            let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
            assert!(found, "{tool} is missing: the container tests need podman, buildah and runc (scripts/setup.sh)");
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag =
            format!("localhost/edge-agent-test-{}-{}:dev", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let conf = tempfile::tempdir().expect("temp dir");
        std::fs::write(conf.path().join("containers.conf"), "[containers]\ndefault_ulimits = []\n")
            .expect("write containers.conf");
        let output = Command::new(crate::repo_root().join("cross/image.sh"))
            .arg("--agent")
            .arg(crate::agent::agent_binary())
            .arg("--onnxruntime")
            .arg(crate::ort_library())
            .args(["--tag", &tag])
            .output()
            .expect("cross/image.sh runs");
        assert!(output.status.success(), "cross/image.sh failed:\n{}", String::from_utf8_lossy(&output.stderr));
        Image { tag, conf, names: Vec::new() }
    }

    /// The image's name.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// A container or volume name unique to this image, removed with it.
    pub fn name(&mut self, what: &str) -> String {
        let name = format!("{}-{what}", self.tag.trim_start_matches("localhost/").replace(':', "-"));
        self.names.push(name.clone());
        name
    }

    /// `podman` with this sandbox's settings, ready for a subcommand.
    pub fn podman(&self) -> Command {
        podman(self.conf.path())
    }

    /// Runs `podman args`, panicking with its stderr when it fails; returns its stdout, trimmed.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let output = self.podman().args(args).output().expect("podman runs");
        assert!(output.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `podman run --rm --network host --read-only` of the image with `mounts` (host path, container path; read
    /// only) and `args` for the agent; waits for the exit.
    pub fn run_once(&self, mounts: &[(&Path, &str)], args: &[&str]) -> Output {
        let mut command = self.podman();
        command.args(["run", "--rm", "--pull", "never", "--network", "host", "--read-only"]);
        for (host, container) in mounts {
            command.arg("--volume").arg(format!("{}:{container}:ro", host.display()));
        }
        command.arg(&self.tag).args(args).output().expect("podman runs")
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.podman().args(["rm", "--force", "--ignore", name]).output();
            let _ = self.podman().args(["volume", "rm", "--force", name]).output();
        }
        let _ = self.podman().args(["rmi", "--force", &self.tag]).output();
    }
}

fn podman(conf: &Path) -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", conf.join("containers.conf")).args([
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
    ]);
    command
}
