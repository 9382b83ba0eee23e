//! Clients from chosen source addresses (127.0.0.x), so that one test acts as many client IPs:
//! one connection that learns which server it reached ([`which_server`]), connections held
//! open ([`Held`]), many clients at once ([`connections_per_client`]), and summaries of which
//! client reached which servers ([`Seen`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;

use socket2::{Domain, Protocol, Socket, Type};

use super::HELLO;
use crate::common::IO_TIMEOUT;

/// Connects to `to` from `src`:0 (a kernel-chosen port of that address), with [`IO_TIMEOUT`] as
/// connect, read and write timeout.
pub fn connect_from(src: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::from((src, 0)).into())?;
    socket.connect_timeout(&to.into(), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends [`HELLO`] and reads the server's id line (without reading past it).
fn ask_id(stream: &mut TcpStream) -> io::Result<String> {
    stream.write_all(HELLO)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed before the server's id (after {:?})",
                        String::from_utf8_lossy(&line)
                    ),
                ))
            }
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "id line too long",
    ))
}

/// One connection from `src` through `proxy`: the id of the server it reached. The client then
/// closes its side and waits for the proxy to close, so the connection is over on return.
pub fn which_server(proxy: SocketAddr, src: Ipv4Addr) -> Result<String, String> {
    let held = hold(proxy, src)?;
    let id = held.server.clone();
    held.close()?;
    Ok(id)
}

/// [`which_server`], panicking with the client address and `what` on failure.
pub fn server_for(proxy: SocketAddr, src: Ipv4Addr, what: &str) -> String {
    which_server(proxy, src).unwrap_or_else(|e| panic!("{what}: client {src} via {proxy}: {e}"))
}

/// An open connection through the proxy, and the server it reached.
pub struct Held {
    /// The client's stream.
    pub stream: TcpStream,
    /// The id of the server it reached.
    pub server: String,
    /// The client address it came from.
    pub src: Ipv4Addr,
}

impl Held {
    /// Closes the client's write side and waits (up to [`IO_TIMEOUT`]) for the proxy to close
    /// the other: the server echoed nothing more, so the connection has ended at the proxy once
    /// this returns Ok.
    pub fn close(mut self) -> Result<(), String> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => return Err(format!("{n} unexpected bytes after the id")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("waiting for the close: {e}")),
            }
        }
    }
}

/// Opens a connection from `src` through `proxy`, learns its server and keeps it open.
pub fn hold(proxy: SocketAddr, src: Ipv4Addr) -> Result<Held, String> {
    let mut stream = connect_from(src, proxy).map_err(|e| format!("connect: {e}"))?;
    let server = ask_id(&mut stream).map_err(|e| format!("reading the server's id: {e}"))?;
    Ok(Held {
        stream,
        server,
        src,
    })
}

/// The servers each client reached, for messages: `{client: [servers in order]}`.
pub type Seen = BTreeMap<Ipv4Addr, Vec<String>>;

/// The distinct servers in `seen`.
pub fn servers_used(seen: &Seen) -> BTreeSet<String> {
    seen.values().flatten().cloned().collect()
}

/// The clients of `seen` that reached more than one server.
pub fn unsteady(seen: &Seen) -> Vec<(Ipv4Addr, Vec<String>)> {
    seen.iter()
        .filter(|(_, servers)| servers.iter().collect::<BTreeSet<_>>().len() > 1)
        .map(|(ip, servers)| (*ip, servers.clone()))
        .collect()
}

/// Each client of `ips` makes `per_client` connections to `proxy` one after another, all clients
/// at once (a thread each); returns the servers each reached, in order.
///
/// One client's connections never overlap, so its first connection has recorded its
/// persistence entry (if any) before its second is balanced.
pub fn connections_per_client(proxy: SocketAddr, ips: &[Ipv4Addr], per_client: usize) -> Seen {
    let handles: Vec<_> = ips
        .iter()
        .map(|&ip| {
            thread::spawn(move || {
                let servers: Result<Vec<String>, String> = (0..per_client)
                    .map(|i| which_server(proxy, ip).map_err(|e| format!("connection {i}: {e}")))
                    .collect();
                (ip, servers)
            })
        })
        .collect();
    let mut seen = Seen::new();
    for handle in handles {
        let (ip, servers) = crate::common::join(handle, "client thread");
        let servers = servers.unwrap_or_else(|e| panic!("client {ip} via {proxy}: {e}"));
        seen.insert(ip, servers);
    }
    seen
}
