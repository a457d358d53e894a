//! Why an input produced no prediction: the stage it failed in and a stable, machine-readable kind. Both are
//! plain strings on the wire (JSON and postcard alike), so subscribers and dashboards key on them; the enums
//! keep the agent from inventing a new spelling by accident.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use std::fmt;

/// An enum whose values travel as their snake_case names.
macro_rules! wire_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<$name, String> {
                $name::ALL.iter().copied().find(|value| value.as_str() == text)
                    .ok_or_else(|| format!("unknown {} {text:?}", stringify!($name)))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                struct Name;
                impl Visitor<'_> for Name {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} name", stringify!($name))
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$name, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Name)
            }
        }
    };
}

wire_names! {
    /// Where in the agent an input failed.
    ErrorStage {
        /// JPEG/PNG decoding (or an empty input).
        Decode => "decode",
        /// Resize and normalisation, or the sensor window's shape and values.
        Preprocess => "preprocess",
        /// `Session::run`.
        Inference => "inference",
        /// Decoding the model's outputs.
        Postprocess => "postprocess",
        /// Reading the source (a file, stdin, an inbound message) or handing the input to the worker.
        Source => "source",
        /// Loading the source's bundle at start.
        Load => "load",
        /// An update announcement (source `update`).
        Announce => "announce",
        /// An operator command (source `update`).
        Command => "command",
        /// Writing the agent's state directory (source `agent`): a condition of the device, not of an input.
        Storage => "storage",
        /// Handing a prediction to the MQTT link.
        Publish => "publish",
    }
}

wire_names! {
    /// A stable cause; health counts errors by it.
    ErrorKind {
        /// The ONNX Runtime library could not be loaded.
        RuntimeLibrary => "runtime_library",
        /// A file or stream could not be read.
        Io => "io",
        /// The bundle's manifest is invalid.
        Manifest => "manifest",
        /// A bundle file does not match its checksum.
        ChecksumMismatch => "checksum_mismatch",
        /// The manifest does not describe the graph.
        ManifestMismatch => "manifest_mismatch",
        /// ONNX Runtime refused the model.
        ModelLoad => "model_load",
        /// An execution provider failed.
        Provider => "provider",
        /// A required execution provider is not available.
        ProviderRequired => "provider_required",
        /// The input has no bytes.
        EmptyInput => "empty_input",
        /// The image could not be decoded.
        Decode => "decode",
        /// The image exceeds the pixel limit.
        ImageTooLarge => "image_too_large",
        /// The sensor window has the wrong shape.
        SensorShape => "sensor_shape",
        /// The input holds NaN or infinity.
        NonFinite => "non_finite",
        /// An image for a sensor model, or the reverse.
        WrongInputKind => "wrong_input_kind",
        /// `Session::run` failed.
        Inference => "inference",
        /// The model's outputs could not be decoded.
        Output => "output",
        /// The model produced NaN or infinity.
        NonFiniteOutput => "non_finite_output",
        /// The bundle's self-test file is invalid.
        SelfTestFile => "self_test_file",
        /// The golden vectors did not match.
        SelfTest => "self_test",
        /// A package is malformed.
        Package => "package",
        /// A package has no signature.
        Unsigned => "unsigned",
        /// A signature or key is malformed.
        MalformedSignature => "malformed_signature",
        /// A package is signed by a key that is not trusted.
        UntrustedKey => "untrusted_key",
        /// A signature does not verify.
        BadSignature => "bad_signature",
        /// A bundle did not load for another reason (for example a model of the wrong input kind).
        Load => "load",
        /// An inbound message could not be parsed.
        Malformed => "malformed",
        /// The worker's queue was full, so the input was refused.
        QueueFull => "queue_full",
        /// The agent is shutting down or the worker has stopped, so the input was refused.
        QueueClosed => "queue_closed",
        /// A row of a recording or a line of standard input is not numbers (it is skipped).
        Parse => "parse",
        /// A recording's header does not match the model's channels (or the file is empty).
        Schema => "schema",
        /// A command names a model this device does not serve.
        UnknownModel => "unknown_model",
        /// An inbound MQTT message is over `mqtt.max_packet_bytes`; it was skipped (source `mqtt`).
        MessageTooLarge => "message_too_large",
        /// Condition: the state directory cannot be written (a read-only file system, or no permission).
        StateDirReadOnly => "state_dir_read_only",
        /// Condition: the state directory does not exist and cannot be created.
        StateDirMissing => "state_dir_missing",
        /// Condition: reading or writing the state directory fails for another reason (an I/O error).
        StateDirFailing => "state_dir_failing",
        /// Condition: the state directory's file system has (almost) no free space.
        DiskFull => "disk_full",
        /// Condition: the on-disk spool cannot write or read its records.
        SpoolFailing => "spool_failing",
        /// Condition: a worker has not returned from an inference for far longer than its usual latency.
        InferenceStuck => "inference_stuck",
        /// A signed order whose counter the device has already seen surpassed (a replay).
        Replayed => "replayed",
        /// A signed order past its expiry.
        Expired => "expired",
        /// A signed order for another device or a group this device is not in.
        Misaddressed => "misaddressed",
        /// A camera does not offer the configured format, size or rate (the message lists what it offers).
        CameraFormat => "camera_format",
        /// A camera's multipart part is not a whole JPEG (truncated, something else) or does not frame (bytes
        /// where a boundary should be, oversized headers); it is skipped and the stream goes on.
        MalformedPart => "malformed_part",
        /// A camera answered an HTTP request with an error status (401 for wrong credentials); retried.
        HttpStatus => "http_status",
        /// A live stream could not be opened or was lost (connection refused or closed, an RTSP error).
        StreamLost => "stream_lost",
        /// A live stream sent no frame (or an HTTP camera no response) for its watchdog's time while its connection
        /// stayed open; reconnected.
        StreamStalled => "stream_stalled",
        /// The camera refused the credentials (or asked for some and none are configured).
        AuthFailed => "auth_failed",
        /// The stream's codec has no decoder here (H.265 with the software decoder, for example).
        UnsupportedCodec => "unsupported_codec",
        /// A prediction too large for one MQTT packet (`mqtt.max_packet_bytes`): not published, the link stays up.
        PayloadTooLarge => "payload_too_large",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_plain_strings() {
        for &kind in ErrorKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(serde_json::from_value::<ErrorKind>(kind.as_str().into()).unwrap(), kind);
            // postcard writes a string, exactly as for a `String` field: the wire did not change.
            assert_eq!(postcard::to_stdvec(&kind).unwrap(), postcard::to_stdvec(kind.as_str()).unwrap());
        }
        for &stage in ErrorStage::ALL {
            assert_eq!(stage.as_str().parse::<ErrorStage>(), Ok(stage));
        }
        assert!(serde_json::from_value::<ErrorKind>("no_such_kind".into()).is_err());
    }
}
