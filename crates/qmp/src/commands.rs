//! One client's commands: parsing a JSON text into a command, checking it
//! against the command table (members, argument names and types),
//! capabilities negotiation, and the replies in QMP's shapes. Knows the
//! machine only through `QmpBackend`.

use serde_json::{json, Map, Value};

use crate::backend::{MigrationStats, QmpBackend, RunState};
use crate::error::QmpError;

/// An argument's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    Str,
    Int,
    Bool,
    StrList,
}

impl ArgKind {
    fn name(self) -> &'static str {
        match self {
            ArgKind::Str => "string",
            ArgKind::Int => "int",
            ArgKind::Bool => "boolean",
            ArgKind::StrList => "array of strings",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            ArgKind::Str => v.is_string(),
            ArgKind::Int => v.is_i64() || v.is_u64(),
            ArgKind::Bool => v.is_boolean(),
            ArgKind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        }
    }
}

struct Arg {
    name: &'static str,
    kind: ArgKind,
    required: bool,
}

struct Command {
    name: &'static str,
    args: &'static [Arg],
}

const fn cmd(name: &'static str) -> Command {
    Command { name, args: &[] }
}

/// Every command the server knows.
const COMMANDS: &[Command] = &[
    Command {
        name: "qmp_capabilities",
        args: &[Arg {
            name: "enable",
            kind: ArgKind::StrList,
            required: false,
        }],
    },
    cmd("query-commands"),
    cmd("query-version"),
    cmd("query-status"),
    cmd("query-name"),
    cmd("query-kvm"),
    cmd("query-cpus-fast"),
    cmd("query-block"),
    cmd("stop"),
    cmd("cont"),
    cmd("system_reset"),
    cmd("system_powerdown"),
    cmd("quit"),
    Command {
        name: "screendump",
        args: &[
            Arg {
                name: "filename",
                kind: ArgKind::Str,
                required: true,
            },
            Arg {
                name: "device",
                kind: ArgKind::Str,
                required: false,
            },
            Arg {
                name: "head",
                kind: ArgKind::Int,
                required: false,
            },
            Arg {
                name: "format",
                kind: ArgKind::Str,
                required: false,
            },
        ],
    },
    Command {
        name: "migrate",
        args: &[
            Arg {
                name: "uri",
                kind: ArgKind::Str,
                required: true,
            },
            Arg {
                name: "detach",
                kind: ArgKind::Bool,
                required: false,
            },
            Arg {
                name: "resume",
                kind: ArgKind::Bool,
                required: false,
            },
        ],
    },
    cmd("query-migrate"),
    cmd("migrate_cancel"),
    Command {
        name: "migrate-incoming",
        args: &[Arg {
            name: "uri",
            kind: ArgKind::Str,
            required: true,
        }],
    },
    Command {
        name: "human-monitor-command",
        args: &[
            Arg {
                name: "command-line",
                kind: ArgKind::Str,
                required: true,
            },
            Arg {
                name: "cpu-index",
                kind: ArgKind::Int,
                required: false,
            },
        ],
    },
];

/// A client's negotiation state.
#[derive(Debug, Default)]
pub struct Session {
    negotiated: bool,
}

/// What to send back, and whether the machine should then quit.
#[derive(Debug)]
pub struct Reply {
    pub message: Value,
    pub then_quit: bool,
}

impl Session {
    /// Whether the client finished capabilities negotiation (and so gets events).
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Handle one JSON text.
    pub fn handle(&mut self, text: &[u8], backend: &dyn QmpBackend) -> Reply {
        let mut then_quit = false;
        let (id, result) = match serde_json::from_slice::<Value>(text) {
            Err(e) => (
                None,
                Err(QmpError::generic(format!("JSON parse error, {e}"))),
            ),
            Ok(v) => {
                let id = v.get("id").cloned();
                let r = self.execute(&v, backend, &mut then_quit);
                (id, r)
            }
        };
        let mut m = Map::new();
        match result {
            Ok(v) => m.insert("return".into(), v),
            Err(e) => {
                then_quit = false;
                m.insert("error".into(), e.to_json())
            }
        };
        if let Some(id) = id {
            m.insert("id".into(), id);
        }
        Reply {
            message: Value::Object(m),
            then_quit,
        }
    }

    fn execute(
        &mut self,
        v: &Value,
        backend: &dyn QmpBackend,
        then_quit: &mut bool,
    ) -> Result<Value, QmpError> {
        let obj = v
            .as_object()
            .ok_or_else(|| QmpError::generic("QMP input must be a JSON object"))?;
        for k in obj.keys() {
            if !matches!(k.as_str(), "execute" | "arguments" | "id") {
                return Err(QmpError::generic(format!(
                    "QMP input member '{k}' is unexpected"
                )));
            }
        }
        let name = match obj.get("execute") {
            None => return Err(QmpError::generic("QMP input lacks member 'execute'")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(QmpError::generic(
                    "QMP input member 'execute' must be a string",
                ))
            }
        };
        let empty = Map::new();
        let args = match obj.get("arguments") {
            None => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => {
                return Err(QmpError::generic(
                    "QMP input member 'arguments' must be an object",
                ))
            }
        };
        if !self.negotiated && name != "qmp_capabilities" {
            return Err(QmpError::not_found(
                "Expecting capabilities negotiation with 'qmp_capabilities'",
            ));
        }
        let spec = COMMANDS
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| QmpError::not_found(format!("The command {name} has not been found")))?;
        check_args(spec, args)?;
        match name {
            "qmp_capabilities" => {
                if self.negotiated {
                    return Err(QmpError::not_found(
                        "Capabilities negotiation is already complete, command ignored",
                    ));
                }
                if let Some(Value::Array(caps)) = args.get("enable") {
                    if let Some(c) = caps.first().and_then(Value::as_str) {
                        return Err(QmpError::generic(format!("Capability '{c}' not available")));
                    }
                }
                self.negotiated = true;
                Ok(json!({}))
            }
            "query-commands" => Ok(Value::Array(
                COMMANDS.iter().map(|c| json!({"name": c.name})).collect(),
            )),
            "query-version" => Ok(version_json(backend)),
            "query-status" => Ok(status_json(backend.status())),
            "query-name" => Ok(match backend.name() {
                Some(n) => json!({"name": n}),
                None => json!({}),
            }),
            "query-kvm" => {
                let (enabled, present) = backend.kvm();
                Ok(json!({"enabled": enabled, "present": present}))
            }
            "query-cpus-fast" => Ok(Value::Array(
                backend
                    .cpus()
                    .iter()
                    .map(|c| {
                        json!({
                            "cpu-index": c.index,
                            "qom-path": format!("/machine/unattached/device[{}]", c.index),
                            "thread-id": c.thread_id,
                            "target": "x86_64",
                            "props": {"core-id": 0, "thread-id": 0, "socket-id": c.index},
                        })
                    })
                    .collect(),
            )),
            "query-block" => Ok(Value::Array(
                backend
                    .blocks()
                    .iter()
                    .map(|b| {
                        let mut image = json!({"filename": b.file, "format": "raw"});
                        if let Some(size) = b.size {
                            image["virtual-size"] = json!(size);
                        }
                        json!({
                            "device": b.device,
                            "qdev": format!("/machine/peripheral-anon/{}", b.device),
                            "locked": false,
                            "removable": false,
                            "type": "unknown",
                            "inserted": {
                                "file": b.file,
                                "ro": b.read_only,
                                "drv": "raw",
                                "encrypted": false,
                                "backing_file_depth": 0,
                                "image": image,
                            },
                        })
                    })
                    .collect(),
            )),
            "stop" => backend.stop().map(|_| json!({})).map_err(QmpError::generic),
            "cont" => backend.cont().map(|_| json!({})).map_err(QmpError::generic),
            "system_reset" => backend
                .system_reset()
                .map(|_| json!({}))
                .map_err(QmpError::generic),
            "system_powerdown" => backend
                .system_powerdown()
                .map(|_| json!({}))
                .map_err(QmpError::generic),
            "quit" => {
                *then_quit = true;
                Ok(json!({}))
            }
            "screendump" => {
                let file = args
                    .get("filename")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let png = match args.get("format").and_then(Value::as_str) {
                    None | Some("ppm") => false,
                    Some("png") => true,
                    Some(other) => {
                        return Err(QmpError::generic(format!(
                            "Parameter 'format' does not accept value '{other}'"
                        )))
                    }
                };
                if args
                    .get("head")
                    .and_then(Value::as_i64)
                    .is_some_and(|h| h != 0)
                {
                    return Err(QmpError::generic("the display has one head, 0"));
                }
                backend
                    .screendump(file, png)
                    .map(|_| json!({}))
                    .map_err(QmpError::generic)
            }
            "migrate" => {
                if args.get("resume").and_then(Value::as_bool) == Some(true) {
                    return Err(QmpError::generic("there is no paused migration to resume"));
                }
                let uri = args.get("uri").and_then(Value::as_str).unwrap_or_default();
                backend
                    .migrate(uri)
                    .map(|_| json!({}))
                    .map_err(QmpError::generic)
            }
            "query-migrate" => Ok(backend
                .query_migrate()
                .map_or(json!({}), |m| migration_json(&m))),
            "migrate_cancel" => {
                backend.migrate_cancel();
                Ok(json!({}))
            }
            "migrate-incoming" => {
                let uri = args.get("uri").and_then(Value::as_str).unwrap_or_default();
                backend
                    .migrate_incoming(uri)
                    .map(|_| json!({}))
                    .map_err(QmpError::generic)
            }
            "human-monitor-command" => {
                let line = args
                    .get("command-line")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                human_command(line, backend, then_quit).map(Value::String)
            }
            _ => Err(QmpError::not_found(format!(
                "The command {name} has not been found"
            ))),
        }
    }
}

fn check_args(spec: &Command, args: &Map<String, Value>) -> Result<(), QmpError> {
    for (k, v) in args {
        let a = spec
            .args
            .iter()
            .find(|a| a.name == k)
            .ok_or_else(|| QmpError::generic(format!("Parameter '{k}' is unexpected")))?;
        if !a.kind.accepts(v) {
            return Err(QmpError::generic(format!(
                "Invalid parameter type for '{k}', expected: {}",
                a.kind.name()
            )));
        }
    }
    if let Some(a) = spec
        .args
        .iter()
        .find(|a| a.required && !args.contains_key(a.name))
    {
        return Err(QmpError::generic(format!(
            "Parameter '{}' is missing",
            a.name
        )));
    }
    Ok(())
}

pub(crate) fn version_json(backend: &dyn QmpBackend) -> Value {
    let v = backend.version();
    json!({
        "qemu": {"major": v.major, "minor": v.minor, "micro": v.micro},
        "package": v.package,
    })
}

/// `query-migrate`'s reply, in QEMU's shape.
fn migration_json(m: &MigrationStats) -> Value {
    let mut v = json!({
        "status": m.status,
        "total-time": m.total_time_ms,
        "ram": {
            "transferred": m.transferred,
            "remaining": m.remaining,
            "total": m.total,
            "dirty-pages-rate": m.dirty_pages_rate,
            "page-size": 4096,
        },
    });
    if let Some(d) = m.downtime_ms {
        v["downtime"] = json!(d);
    }
    if let Some(e) = &m.error {
        v["error-desc"] = json!(e);
    }
    v
}

fn status_json(s: RunState) -> Value {
    json!({"running": s == RunState::Running, "singlestep": false, "status": s.name()})
}

/// The few HMP commands Kite understands, with HMP's text replies.
fn human_command(
    line: &str,
    backend: &dyn QmpBackend,
    then_quit: &mut bool,
) -> Result<String, QmpError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let done = |r: Result<(), String>| r.map(|_| String::new()).map_err(QmpError::generic);
    match words.as_slice() {
        ["info", "status"] => Ok(format!("VM status: {}\r\n", backend.status().name())),
        ["info", "version"] => {
            let v = backend.version();
            Ok(format!(
                "{}.{}.{} ({})\r\n",
                v.major, v.minor, v.micro, v.package
            ))
        }
        ["stop"] => done(backend.stop()),
        ["cont" | "c"] => done(backend.cont()),
        ["system_reset"] => done(backend.system_reset()),
        ["system_powerdown"] => done(backend.system_powerdown()),
        ["quit" | "q"] => {
            *then_quit = true;
            Ok(String::new())
        }
        [] => Ok(String::new()),
        [w, ..] => Ok(format!("unknown command: '{w}'\r\n")),
    }
}

#[cfg(test)]
mod tests;
