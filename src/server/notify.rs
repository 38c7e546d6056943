//! systemd's readiness protocol (`Type=notify`, sd_notify(3)) in a few lines and no crate: when
//! `NOTIFY_SOCKET` names a socket, one datagram says `READY=1` once every listener is bound,
//! and `STOPPING=1` when the drain begins. Without the variable (anything but systemd) it does
//! nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`) to the socket `notify_socket` names: a path, or
/// an abstract name written with a leading `@`. Failures are logged, never fatal: readiness
/// reporting must not stop pipgate from serving.
pub fn notify(notify_socket: Option<&str>, state: &str) {
    let Some(target) = notify_socket.filter(|s| !s.is_empty()) else { return };
    let sent = UnixDatagram::unbound().and_then(|socket| match target.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        _ => socket.send_to(state.as_bytes(), target),
    });
    match sent {
        Ok(_) => tracing::debug!(state, "told systemd"),
        Err(error) => tracing::warn!(%error, socket = target, "cannot notify systemd"),
    }
}
