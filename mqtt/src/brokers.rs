//! The brokers a link may use, how their addresses are written, and which one it tries next: the pure part of
//! failover (the link swaps rumqttc's options, see `link.rs`).

use std::fmt;

/// One broker: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
}

/// Why a broker address is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{text:?}: invalid port {port:?}")]
    InvalidPort { text: String, port: String },
    #[error("{0:?}: missing ']'")]
    MissingBracket(String),
    #[error("{0:?}: expected ':' after ']'")]
    AfterBracket(String),
}

impl BrokerAddress {
    pub fn new(host: impl Into<String>, port: u16) -> BrokerAddress {
        BrokerAddress { host: host.into(), port }
    }

    /// `host[:port]`, `[ipv6][:port]`, or a bare IPv6 address, with `default_port` where none is given.
    /// Port 0 is not a port.
    pub fn parse(text: &str, default_port: u16) -> Result<BrokerAddress, AddressError> {
        let parse_port = |port: &str| match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(AddressError::InvalidPort { text: text.to_owned(), port: port.to_owned() }),
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| AddressError::MissingBracket(text.to_owned()))?;
            match after {
                "" => (host, default_port),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, parse_port(port)?),
                    None => return Err(AddressError::AfterBracket(text.to_owned())),
                },
            }
        } else {
            match text.rsplit_once(':') {
                // More than one ':' and no brackets: an IPv6 address without a port.
                Some((host, port)) if !host.contains(':') => (host, parse_port(port)?),
                _ => (text, default_port),
            }
        };
        if host.is_empty() {
            return Err(AddressError::NoHost(text.to_owned()));
        }
        Ok(BrokerAddress::new(host, port))
    }
}

/// `host:port`, with an IPv6 address in brackets.
impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which of `count` brokers the link uses: the first at start, the next one (round robin) after every
/// failure, whether a connection attempt failed or an established connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    count: usize,
    current: usize,
}

impl Rotation {
    pub(crate) fn new(count: usize) -> Rotation {
        Rotation { count: count.max(1), current: 0 }
    }

    /// Moves on after a failure; the broker to try now, or `None` when there is only one.
    pub(crate) fn advance(&mut self) -> Option<usize> {
        if self.count == 1 {
            return None;
        }
        self.current = (self.current + 1) % self.count;
        Some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let parse = |text: &str| BrokerAddress::parse(text, 1883).map(|a| (a.host.clone(), a.port));
        assert_eq!(parse("broker"), Ok(("broker".to_owned(), 1883)));
        assert_eq!(parse("broker:8883"), Ok(("broker".to_owned(), 8883)));
        assert_eq!(parse("10.0.0.1:1884"), Ok(("10.0.0.1".to_owned(), 1884)));
        assert_eq!(parse("[::1]:1885"), Ok(("::1".to_owned(), 1885)));
        assert_eq!(parse("[::1]"), Ok(("::1".to_owned(), 1883)));
        assert_eq!(parse("fe80::1"), Ok(("fe80::1".to_owned(), 1883)));
        let error = |text: &str| BrokerAddress::parse(text, 1883).unwrap_err().to_string();
        assert_eq!(error("broker:http"), "\"broker:http\": invalid port \"http\"");
        assert_eq!(error("broker:0"), "\"broker:0\": invalid port \"0\"");
        assert_eq!(error(":1883"), "\":1883\": no host");
        assert_eq!(error("[::1"), "\"[::1\": missing ']'");
        assert_eq!(error("[::1]x"), "\"[::1]x\": expected ':' after ']'");
        assert_eq!(BrokerAddress::new("::1", 1883).to_string(), "[::1]:1883");
        assert_eq!(BrokerAddress::new("broker", 8883).to_string(), "broker:8883");
    }

    #[test]
    fn rotation_goes_round_the_list() {
        let mut rotation = Rotation::new(3);
        let next: Vec<Option<usize>> = (0..4).map(|_| rotation.advance()).collect();
        assert_eq!(next, [Some(1), Some(2), Some(0), Some(1)]);
    }

    #[test]
    fn one_broker_is_never_left() {
        let mut rotation = Rotation::new(1);
        assert_eq!(rotation.advance(), None);
        assert_eq!(rotation.advance(), None);
    }
}
