//! Keeping one worker's warm pools filled, off the connection path: a task per service waits for
//! a pool to be drawn from (or a client to bring a new key), then opens connections until each
//! usable server has `warm` idle ones again.

use std::rc::Rc;
use std::time::Duration;

use rustls_pki_types::ServerName;

use super::reencrypt::open_tls;
use super::ServiceState;
use crate::backend::pool::{Reusable, WarmPool};
use crate::config::{Mode, Service};
use crate::net::connect::connect;
use crate::net::TcpStream;
use crate::tls::stream::TlsStream;

/// Re-encrypt pool key: the server name sent as SNI and the ALPN list offered.
pub type TlsKey = (ServerName<'static>, Vec<Vec<u8>>);
/// A worker's pool of handshaken server connections.
pub type TlsPool = WarmPool<TlsStream, TlsKey>;
/// A worker's pool of connected server sockets (offload).
pub type TcpPool = WarmPool<TcpStream, ()>;

impl Reusable for TlsStream {
    fn still_usable(&self) -> bool {
        self.absorb_pending()
    }
}

impl Reusable for TcpStream {
    fn still_usable(&self) -> bool {
        let mut byte = [0u8; 1];
        // SAFETY: a non-blocking peek of one byte into a stack buffer; no read is in flight.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // Nothing to read yet is the only healthy answer: 0 is EOF, data is unsolicited.
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

/// How often a pool is checked even when nothing happened: expires idle connections.
const SWEEP: Duration = Duration::from_secs(5);

/// The pools a service needs on one worker: reencrypt pools start filling at once when the
/// server name is configured (else with the first client's); offload pools at once.
pub fn pools(config: &Service) -> (Option<TlsPool>, Option<TcpPool>) {
    if config.warm == 0 {
        return (None, None);
    }
    let n = config.servers.len();
    match config.mode {
        Mode::Reencrypt => {
            let template = config
                .backend_tls
                .as_ref()
                .and_then(|b| b.sni.clone())
                .map(|name| (name, Vec::new()));
            (Some(WarmPool::new(n, config.warm, template)), None)
        }
        Mode::Offload => (None, Some(WarmPool::new(n, config.warm, Some(())))),
        Mode::Passthrough => (None, None),
    }
}

/// Fills this worker's pools of `service` until the worker stops or the state is retired by a
/// reload (its idle connections then close with it).
pub async fn refill(service: Rc<ServiceState>) {
    while !service.retired.get() {
        if let Some(pool) = &service.tls_pool {
            pool.expire();
            for index in 0..pool.servers() {
                while service.shared.balance.usable(index) {
                    let Some((name, alpn)) = pool.wanted(index) else {
                        break;
                    };
                    let front = match &name {
                        ServerName::DnsName(d) => Some(d.as_ref().to_ascii_lowercase()),
                        _ => None,
                    };
                    let timeout = service.config().connect_timeout;
                    match open_tls(
                        &service,
                        index,
                        name.clone(),
                        &alpn,
                        front.as_deref(),
                        timeout,
                    )
                    .await
                    {
                        // Retired meanwhile: the connection closes here instead of idling.
                        Ok(_) if service.retired.get() => return,
                        Ok(stream) => pool.put(index, (name, alpn), stream),
                        Err(why) => {
                            tracing::debug!(service = %service.config().name, server = %service.config().servers[index].address, error = %why, "warm pool: cannot open a connection; retrying later");
                            break;
                        }
                    }
                }
            }
            pool.changed(SWEEP).await;
        } else if let Some(pool) = &service.tcp_pool {
            pool.expire();
            let config = service.config();
            for index in 0..pool.servers() {
                while service.shared.balance.usable(index) && pool.wanted(index).is_some() {
                    match connect(config.servers[index].address, config.connect_timeout).await {
                        Ok(_) if service.retired.get() => return,
                        Ok(stream) => pool.put(index, (), stream),
                        Err(e) => {
                            service.server_counters[index].connect_errors.inc();
                            tracing::debug!(service = %config.name, server = %config.servers[index].address, error = %e, "warm pool: cannot connect; retrying later");
                            break;
                        }
                    }
                }
            }
            pool.changed(SWEEP).await;
        } else {
            return;
        }
    }
}
