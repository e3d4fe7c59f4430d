//! Why a channel's table is refused, and which key is to blame.
//!
//! The loader promises file:line:col for every mistake. A channel checks
//! its own table after it has been deserialized, when the positions of the
//! keys are gone; so the error carries the key's path inside the table
//! (`url`, `aliyun.endpoint`) and the loader finds that key in the file.
//! Errors about the table as a whole (no provider, two providers, a secret
//! variable not set when the client is built) carry no key and point at the
//! table.

use std::fmt;

/// A channel configuration error: the message as the user reads it, and the
/// key it is about when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChannelError {
    key: Option<String>,
    message: String,
}

impl ChannelError {
    /// The value of `key` is wrong.
    pub(crate) fn key(key: &str, message: impl fmt::Display) -> ChannelError {
        ChannelError {
            key: Some(key.to_owned()),
            message: message.to_string(),
        }
    }

    /// Something about the table as a whole is wrong.
    pub(crate) fn table(message: impl fmt::Display) -> ChannelError {
        ChannelError {
            key: None,
            message: message.to_string(),
        }
    }

    /// The same error seen from the enclosing table: a problem in
    /// `[receiver.sms.aliyun]` is `aliyun.<key>` from `[receiver.sms]`, and
    /// its message says `aliyun: …` as it always has.
    pub(crate) fn within(self, table: &str) -> ChannelError {
        ChannelError {
            key: Some(match self.key {
                Some(k) => format!("{table}.{k}"),
                None => table.to_owned(),
            }),
            message: format!("{table}: {}", self.message),
        }
    }

    /// The same error, about `key`: for checks shared by several keys or
    /// used again at delivery (a phone number), which know no key.
    pub(crate) fn for_key(self, key: &str) -> ChannelError {
        ChannelError {
            key: Some(key.to_owned()),
            message: self.message,
        }
    }

    /// The same error with the channel's name in front, as a built client's
    /// errors read (`dingtalk: …`); the key stays the same.
    pub(crate) fn in_channel(self, channel: &str) -> ChannelError {
        ChannelError {
            key: self.key,
            message: format!("{channel}: {}", self.message),
        }
    }

    /// The dotted path of the key inside the channel's table, if the error
    /// is about one.
    pub fn key_path(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_prefixes_path_and_message() {
        let e = ChannelError::key("endpoint", "`endpoint` \"x\": expected a URL").within("aliyun");
        assert_eq!(e.key_path(), Some("aliyun.endpoint"));
        assert_eq!(e.to_string(), "aliyun: `endpoint` \"x\": expected a URL");
        let t = ChannelError::table("no provider").within("voice");
        assert_eq!(t.key_path(), Some("voice"));
        assert_eq!(ChannelError::table("x").key_path(), None);
    }
}
