//! Error cause chains as one line of text.
//!
//! Many library errors (hyper's "client error", azure_core's) hide the cause in their
//! `Display`; logs and answers need it. This sits at the bottom of the house so that the
//! upstream client, the credentials and the error table can all use it without importing each
//! other.

/// An error and its causes, joined with `: `.
pub fn display_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_hidden_cause_is_shown() {
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(display_chain(&error), "client error: connection refused");
    }
}
