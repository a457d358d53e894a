//! `retrain fetch` and `retrain list`: the workstation side of retraining evidence.
//!
//! A device keeps the inputs that caused a drift alert as a candidate and announces it on
//! `<prefix>/retrain/candidate`. `fetch` sends the device a signed `fetch_evidence` order (inputs are the
//! device's data: only an operator key the device trusts may ask for them), collects the samples it publishes on
//! `<prefix>/retrain/samples/<candidate>/<id>` and its answer on `<prefix>/retrain/fetched/<candidate>`, and
//! writes a directory ready for labelling: the samples, `candidate.json` and `labels.csv`.

use crate::push::{Broker, BrokerArgs, Inbound, KeyArgs, Signer, client_id, device_target};
use anyhow::{Context, Result, bail};
use clap::Args;
use protocol::update::{Instruction, Target as OrderTarget, UpdateTopics};
use protocol::wire::{self, Format, Message, RetrainCandidate, RetrainFetch, Topics, is_sample_id, parse_candidate_id};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Samples are as large as the device's packets: take the largest MQTT allows.
const MAX_PACKET: usize = 268_435_455;
/// The labelling template written beside the samples.
const LABELS_FILE: &str = "labels.csv";
const CANDIDATE_FILE: &str = "candidate.json";

#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub signer: KeyArgs,
    /// The device that kept the candidate.
    #[arg(long, value_name = "ID")]
    pub device: String,
    /// The device's topic prefix (default devices/<id>).
    #[arg(long)]
    pub prefix: Option<String>,
    /// The candidate's id, as announced on <prefix>/retrain/candidate (`<at_ms>-<n>`).
    #[arg(long, value_name = "ID")]
    pub candidate: String,
    /// The directory to write the samples, candidate.json and labels.csv into: new, or empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seconds to wait for the device's answer and samples.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The device whose candidate announcements to show.
    #[arg(long, value_name = "ID")]
    pub device: String,
    /// The device's topic prefix (default devices/<id>).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Seconds to listen: the retained announcement comes at once, new ones as they are made.
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: u64,
}

/// `retrain fetch`: 0 when every sample of the candidate was written, 1 otherwise.
pub fn fetch(args: &FetchArgs) -> Result<ExitCode> {
    let target = device_target(&args.device, args.prefix.as_deref())?;
    let candidate = args.candidate.as_str();
    if parse_candidate_id(candidate).is_none() {
        bail!("--candidate {candidate:?}: a candidate id is <at_ms>-<n>");
    }
    prepare_out(&args.out)?;
    let topics = Topics::new(target.prefix.clone());
    let timeout = Duration::from_secs(args.timeout);
    let mut signer = Signer::open(&args.signer)?;
    let instruction = Instruction::FetchEvidence { candidate: candidate.to_owned() };
    let (order, counter) = signer.seal(OrderTarget::Device(target.device.clone()), instruction, timeout)?;
    let mut broker = Broker::connect(&args.broker, &client_id(), MAX_PACKET)?;
    let (samples_topic, answer_topic) = (topics.retrain_samples(candidate), topics.retrain_fetched(candidate));
    broker.subscribe(&format!("{samples_topic}/+"))?;
    broker.subscribe(&answer_topic)?;
    let deadline = Instant::now() + timeout;
    let command_topic = UpdateTopics::device(&target.prefix).command();
    broker.publish(&command_topic, &order, deadline)?;
    log::info!("Asked {} for candidate {candidate} on {command_topic}.", target.device);
    let mut received = BTreeMap::new();
    let mut answer: Option<RetrainFetch> = None;
    while !answer.as_ref().is_some_and(|answer| answer.published.iter().all(|id| received.contains_key(id))) {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else { break };
        let Some(Inbound::Message { topic, payload, .. }) = broker.recv(wait) else { continue };
        if topic == answer_topic {
            match decode::<RetrainFetch>(&payload) {
                // Only the device's answer to this order counts.
                Ok(fetched) if fetched.order == counter => answer = Some(fetched),
                Ok(_) => {}
                Err(error) => log::warn!("Ignoring an unreadable answer on {topic}: {error}."),
            }
        } else if let Some(id) = topic.strip_prefix(&samples_topic).and_then(|rest| rest.strip_prefix('/'))
            && is_sample_id(id)
        {
            received.insert(id.to_owned(), payload);
        }
    }
    broker.close();
    let Some(answer) = answer else {
        bail!(
            "no answer from {} within {} s (a refused order is reported on {})",
            target.device,
            args.timeout,
            topics.errors("update")
        );
    };
    if let Some(error) = &answer.error {
        bail!("{} refused the fetch: {error}", target.device);
    }
    let Some(announcement) = &answer.announcement else { bail!("the answer of {} has no candidate", target.device) };
    let written = write_out(&args.out, announcement, &received)?;
    for skipped in &answer.skipped {
        println!("{}: not sent by the device: {}", skipped.id, skipped.reason);
    }
    println!(
        "Wrote {written} of {} samples of candidate {candidate} into {}.",
        announcement.samples.len(),
        args.out.display()
    );
    Ok(if written == announcement.samples.len() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `retrain list`: prints each candidate announcement heard within `--wait`, one JSON object per line.
pub fn list(args: &ListArgs) -> Result<ExitCode> {
    let target = device_target(&args.device, args.prefix.as_deref())?;
    let topic = Topics::new(target.prefix).retrain_candidate();
    let mut broker = Broker::connect(&args.broker, &client_id(), MAX_PACKET)?;
    broker.subscribe(&topic)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut out = std::io::stdout().lock();
    while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
        let Some(Inbound::Message { payload, .. }) = broker.recv(wait) else { continue };
        match decode::<RetrainCandidate>(&payload) {
            Ok(candidate) => writeln!(out, "{}", serde_json::to_string(&candidate)?)?,
            Err(error) => log::warn!("Ignoring an unreadable announcement on {topic}: {error}."),
        }
    }
    broker.close();
    Ok(ExitCode::SUCCESS)
}

/// A payload in the device's `mqtt.format`: JSON is an object, postcard an envelope.
fn decode<M: Message + DeserializeOwned>(payload: &[u8]) -> Result<M, wire::WireError> {
    let format = if payload.first() == Some(&b'{') { Format::Json } else { Format::Postcard };
    wire::decode(format, payload)
}

/// Creates `out`, or checks that it is empty: a fetch never mixes with (or overwrites) other files.
fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?.next().is_some() {
        bail!("--out {}: the directory is not empty", out.display());
    }
    Ok(())
}

/// Writes the samples received whole (as long as announced), `candidate.json` and a `labels.csv` template with
/// one `sample,label` row per sample written; returns how many samples were written.
fn write_out(out: &Path, candidate: &RetrainCandidate, received: &BTreeMap<String, Vec<u8>>) -> Result<usize> {
    let mut labels = String::from("sample,label\n");
    let mut written = 0;
    for sample in &candidate.samples {
        match received.get(&sample.id) {
            Some(bytes) if bytes.len() as u64 == sample.bytes && is_sample_id(&sample.id) => {
                let path = out.join(&sample.id);
                std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
                labels.push_str(&format!("{},\n", sample.id));
                written += 1;
            }
            Some(bytes) => {
                println!("{}: {} bytes arrived, {} announced; not written", sample.id, bytes.len(), sample.bytes)
            }
            None => println!("{}: did not arrive", sample.id),
        }
    }
    let json = serde_json::to_vec_pretty(candidate).context("encoding candidate.json")?;
    std::fs::write(out.join(CANDIDATE_FILE), json).context("writing candidate.json")?;
    std::fs::write(out.join(LABELS_FILE), labels).context("writing labels.csv")?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ModelIdentity;
    use protocol::wire::EvidenceSample;

    fn sample(id: &str, bytes: u64) -> EvidenceSample {
        EvidenceSample { id: id.into(), seq: 1, captured_ms: 2, bytes, kind: "jpeg".into(), frame: None }
    }

    #[test]
    fn the_directory_holds_whole_samples_the_announcement_and_a_labelling_template() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("fetched");
        prepare_out(&out).expect("created");
        let candidate = RetrainCandidate {
            device: "d1".into(),
            source: "cam".into(),
            candidate: "5-0".into(),
            model: ModelIdentity { name: "m".into(), version: "1.0.0".into(), sha256: String::new() },
            at_ms: 5,
            alerts: Vec::new(),
            samples: vec![sample("1.jpg", 3), sample("2.jpg", 4), sample("3.jpg", 1)],
        };
        let received = BTreeMap::from([("1.jpg".to_owned(), vec![1, 2, 3]), ("2.jpg".to_owned(), vec![9])]);
        assert_eq!(write_out(&out, &candidate, &received).expect("written"), 1, "2.jpg is short, 3.jpg missing");
        assert_eq!(std::fs::read(out.join("1.jpg")).expect("sample"), [1, 2, 3]);
        assert!(!out.join("2.jpg").exists());
        assert_eq!(std::fs::read_to_string(out.join(LABELS_FILE)).expect("labels"), "sample,label\n1.jpg,\n");
        let stored: RetrainCandidate =
            serde_json::from_slice(&std::fs::read(out.join(CANDIDATE_FILE)).expect("json")).expect("candidate");
        assert_eq!(stored, candidate);
        assert!(prepare_out(&out).is_err(), "a directory with files is refused");
    }

    #[test]
    fn answers_are_read_in_either_format() {
        let answer = RetrainFetch {
            device: "d1".into(),
            candidate: "5-0".into(),
            order: 3,
            announcement: None,
            published: Vec::new(),
            skipped: Vec::new(),
            error: Some("no candidate".into()),
        };
        for format in [Format::Json, Format::Postcard] {
            let payload = wire::encode(format, &answer).expect("encoded");
            assert_eq!(decode::<RetrainFetch>(&payload).expect("decoded"), answer);
        }
    }
}
