//! The command side of the control socket: connect if a daemon listens, send one request,
//! read its replies. Blocking: the commands have no async runtime of their own for this.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::protocol::{Reply, Request};
use super::{ControlError, socket_path};

/// A connection to a running daemon.
pub struct Connection {
    path: PathBuf,
    stream: BufReader<UnixStream>,
}

/// Connect to the daemon using `state_dir`; `None` when none listens (no socket file, or a
/// dead daemon's leftover that nobody answers on).
pub fn connect(state_dir: &Path) -> Result<Option<Connection>, ControlError> {
    let path = socket_path(state_dir);
    match UnixStream::connect(&path) {
        Ok(stream) => Ok(Some(Connection {
            path,
            stream: BufReader::new(stream),
        })),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            Ok(None)
        }
        Err(source) => Err(ControlError::Io { path, source }),
    }
}

impl Connection {
    /// Send `request`; call `on_reply` for every reply up to the final one, which is returned.
    pub fn request(
        mut self,
        request: &Request,
        mut on_reply: impl FnMut(&Reply),
    ) -> Result<Reply, ControlError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ControlError::Io { path, source }
        };
        let mut line = serde_json::to_string(request).expect("a request serializes");
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .map_err(io(&self.path))?;
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).map_err(io(&self.path))?;
            if n == 0 {
                return Err(ControlError::Closed { path: self.path });
            }
            let reply: Reply = serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
                path: self.path.clone(),
                problem: e.to_string(),
            })?;
            if reply.is_final() {
                return Ok(reply);
            }
            on_reply(&reply);
        }
    }
}
