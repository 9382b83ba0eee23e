//! Configs for the balancing tests: passthrough services with the balancing keys
//! ([`ServiceSpec`], [`config`]) and the bodies of `[service.health]` tables.

use std::net::SocketAddr;

use super::HEALTH_PATH;

/// One passthrough service for [`config`].
pub struct ServiceSpec<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its listen address.
    pub listen: SocketAddr,
    /// `schedule`.
    pub schedule: &'a str,
    /// `persistence` timeout, if any (`mode = "source-ip"`).
    pub persistence: Option<&'a str>,
    /// `steer = "client-ip"` when true.
    pub steer: bool,
    /// The `[service.health]` table's body (key = value lines), if any.
    pub health: Option<String>,
    /// Its servers, in order (weight 1 each).
    pub servers: Vec<SocketAddr>,
}

impl<'a> ServiceSpec<'a> {
    /// A round-robin service named "test" on `listen` over `servers`, nothing else set.
    pub fn new(listen: SocketAddr, servers: Vec<SocketAddr>) -> ServiceSpec<'a> {
        ServiceSpec {
            name: "test",
            listen,
            schedule: "round-robin",
            persistence: None,
            steer: false,
            health: None,
            servers,
        }
    }
}

/// A config with `[global] workers = {workers}` and the given passthrough services.
pub fn config(workers: u32, services: &[ServiceSpec<'_>]) -> String {
    let mut toml = format!("[global]\nworkers = {workers}\ndrain_timeout = \"1s\"\n");
    for s in services {
        toml.push_str(&format!(
            "\n[[service]]\nname = \"{}\"\nlisten = \"{}\"\nmode = \"passthrough\"\n\
             connect_timeout = \"1s\"\nidle_timeout = \"60s\"\nschedule = \"{}\"\n",
            s.name, s.listen, s.schedule
        ));
        if let Some(timeout) = s.persistence {
            toml.push_str(&format!(
                "persistence = {{ mode = \"source-ip\", timeout = \"{timeout}\" }}\n"
            ));
        }
        if s.steer {
            toml.push_str("steer = \"client-ip\"\n");
        }
        if let Some(health) = &s.health {
            toml.push_str(&format!("\n[service.health]\n{health}\n"));
        }
        for server in &s.servers {
            toml.push_str(&format!(
                "\n[[service.server]]\naddress = \"{server}\"\nweight = 1\n"
            ));
        }
    }
    toml
}

/// The body of an `http` `[service.health]` table checking [`HEALTH_PATH`] every 100 ms.
///
/// The timeout is 90 ms rather than a tighter one: a loaded test machine can stall a checker or a
/// fake server for tens of milliseconds, and a spurious timeout is a failed check that would
/// disturb the exact rise/fall counts the tests look at.
pub fn http_health(rise: u32, fall: u32) -> String {
    format!(
        "check = \"http\"\npath = \"{HEALTH_PATH}\"\nexpect = [200]\ninterval = \"100ms\"\n\
         timeout = \"90ms\"\nrise = {rise}\nfall = {fall}"
    )
}

/// The body of a `tcp` `[service.health]` table, every 100 ms.
pub fn tcp_health(rise: u32, fall: u32) -> String {
    format!(
        "check = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nrise = {rise}\nfall = {fall}"
    )
}
