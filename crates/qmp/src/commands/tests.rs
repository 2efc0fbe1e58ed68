//! Commands against a recording backend: negotiation, validation, shapes.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::backend::{BlockInfo, CpuInfo, VersionInfo};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<&'static str>>,
    paused: Mutex<bool>,
}

impl QmpBackend for Fake {
    fn version(&self) -> VersionInfo {
        VersionInfo {
            major: 0,
            minor: 1,
            micro: 2,
            package: "kite test".into(),
        }
    }
    fn status(&self) -> RunState {
        if *self.paused.lock().unwrap() {
            RunState::Paused
        } else {
            RunState::Running
        }
    }
    fn stop(&self) -> Result<(), String> {
        self.calls.lock().unwrap().push("stop");
        *self.paused.lock().unwrap() = true;
        Ok(())
    }
    fn cont(&self) -> Result<(), String> {
        self.calls.lock().unwrap().push("cont");
        *self.paused.lock().unwrap() = false;
        Ok(())
    }
    fn system_reset(&self) -> Result<(), String> {
        Err("no board".into())
    }
    fn system_powerdown(&self) -> Result<(), String> {
        self.calls.lock().unwrap().push("powerdown");
        Ok(())
    }
    fn quit(&self) {
        self.calls.lock().unwrap().push("quit");
    }
    fn cpus(&self) -> Vec<CpuInfo> {
        vec![
            CpuInfo {
                index: 0,
                thread_id: 100,
            },
            CpuInfo {
                index: 1,
                thread_id: 101,
            },
        ]
    }
    fn blocks(&self) -> Vec<BlockInfo> {
        vec![BlockInfo {
            device: "virtio0".into(),
            file: "/tmp/d.img".into(),
            read_only: true,
            size: Some(4096),
        }]
    }
    fn kvm(&self) -> (bool, bool) {
        (false, true)
    }
    fn name(&self) -> Option<String> {
        None
    }
}

fn send(s: &mut Session, b: &Fake, text: &str) -> Value {
    s.handle(text.as_bytes(), b).message
}

fn negotiated(b: &Fake) -> Session {
    let mut s = Session::default();
    assert_eq!(
        send(&mut s, b, r#"{"execute":"qmp_capabilities"}"#),
        json!({"return": {}})
    );
    s
}

fn class(v: &Value) -> &str {
    v["error"]["class"].as_str().unwrap_or("<no error>")
}

#[test]
fn commands_wait_for_negotiation_and_ids_are_echoed() {
    let b = Fake::default();
    let mut s = Session::default();
    let r = send(&mut s, &b, r#"{"execute":"query-status","id":7}"#);
    assert_eq!(class(&r), "CommandNotFound");
    assert_eq!(r["id"], 7);
    assert!(!s.negotiated());
    let r = send(
        &mut s,
        &b,
        r#"{"execute":"qmp_capabilities","id":{"tag":["x"]}}"#,
    );
    assert_eq!(r, json!({"return": {}, "id": {"tag": ["x"]}}));
    assert!(s.negotiated());
    let r = send(&mut s, &b, r#"{"execute":"qmp_capabilities"}"#);
    assert_eq!(class(&r), "CommandNotFound");
    let r = send(&mut s, &b, r#"{"execute":"query-status","id":"a"}"#);
    assert_eq!(
        r,
        json!({"return": {"running": true, "singlestep": false, "status": "running"}, "id": "a"})
    );
}

#[test]
fn oob_is_not_offered() {
    let b = Fake::default();
    let mut s = Session::default();
    let r = send(
        &mut s,
        &b,
        r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
    );
    assert_eq!(class(&r), "GenericError");
    assert!(!s.negotiated());
}

#[test]
fn malformed_input_gets_generic_errors() {
    let b = Fake::default();
    let mut s = negotiated(&b);
    for (text, want) in [
        ("{\"execute\": ", "JSON parse error"),
        ("[1,2]", "must be a JSON object"),
        ("42", "must be a JSON object"),
        (r#"{"arguments":{}}"#, "lacks member 'execute'"),
        (r#"{"execute":5}"#, "'execute' must be a string"),
        (
            r#"{"execute":"stop","arguments":[]}"#,
            "'arguments' must be an object",
        ),
        (r#"{"execute":"stop","extra":1}"#, "'extra' is unexpected"),
        (
            r#"{"execute":"stop","arguments":{"x":1}}"#,
            "Parameter 'x' is unexpected",
        ),
        (
            r#"{"execute":"human-monitor-command","arguments":{"command-line":5}}"#,
            "Invalid parameter type for 'command-line', expected: string",
        ),
        (
            r#"{"execute":"human-monitor-command"}"#,
            "Parameter 'command-line' is missing",
        ),
        (
            r#"{"execute":"qmp_capabilities","arguments":{"enable":[1]}}"#,
            "Invalid parameter type for 'enable'",
        ),
    ] {
        let r = send(&mut s, &b, text);
        assert_eq!(class(&r), "GenericError", "{text}: {r}");
        let desc = r["error"]["desc"].as_str().unwrap();
        assert!(desc.contains(want), "{text}: {desc}");
    }
    let r = send(&mut s, &b, r#"{"execute":"no-such-thing","id":1}"#);
    assert_eq!(class(&r), "CommandNotFound");
    assert_eq!(r["id"], 1);
    // Nothing reached the machine.
    assert!(b.calls.lock().unwrap().is_empty());
}

#[test]
fn machine_commands_reach_the_backend_in_qmp_shapes() {
    let b = Fake::default();
    let mut s = negotiated(&b);
    assert_eq!(
        send(&mut s, &b, r#"{"execute":"stop"}"#),
        json!({"return": {}})
    );
    assert_eq!(
        send(&mut s, &b, r#"{"execute":"query-status"}"#)["return"]["status"],
        "paused"
    );
    assert_eq!(
        send(&mut s, &b, r#"{"execute":"cont"}"#),
        json!({"return": {}})
    );
    let r = send(&mut s, &b, r#"{"execute":"system_reset"}"#);
    assert_eq!(
        r["error"],
        json!({"class": "GenericError", "desc": "no board"})
    );
    let cpus = send(&mut s, &b, r#"{"execute":"query-cpus-fast"}"#);
    assert_eq!(cpus["return"][1]["cpu-index"], 1);
    assert_eq!(cpus["return"][1]["thread-id"], 101);
    assert_eq!(cpus["return"][0]["target"], "x86_64");
    assert_eq!(
        cpus["return"][0]["qom-path"],
        "/machine/unattached/device[0]"
    );
    let blk = send(&mut s, &b, r#"{"execute":"query-block"}"#);
    assert_eq!(blk["return"][0]["device"], "virtio0");
    assert_eq!(blk["return"][0]["inserted"]["file"], "/tmp/d.img");
    assert_eq!(blk["return"][0]["inserted"]["ro"], true);
    assert_eq!(blk["return"][0]["inserted"]["drv"], "raw");
    assert_eq!(
        send(&mut s, &b, r#"{"execute":"query-kvm"}"#),
        json!({"return": {"enabled": false, "present": true}})
    );
    assert_eq!(
        send(&mut s, &b, r#"{"execute":"query-version"}"#)["return"],
        json!({"qemu": {"major": 0, "minor": 1, "micro": 2}, "package": "kite test"})
    );
    let names: Vec<String> = send(&mut s, &b, r#"{"execute":"query-commands"}"#)["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for n in ["qmp_capabilities", "stop", "cont", "quit", "query-status"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert_eq!(
        send(&mut s, &b, r#"{"execute":"system_powerdown"}"#),
        json!({"return": {}})
    );
    let hmp = send(
        &mut s,
        &b,
        r#"{"execute":"human-monitor-command","arguments":{"command-line":"info status"}}"#,
    );
    assert_eq!(hmp["return"], "VM status: running\r\n");
    let q = s.handle(br#"{"execute":"quit"}"#, &b);
    assert!(q.then_quit);
    assert_eq!(q.message, json!({"return": {}}));
    assert_eq!(*b.calls.lock().unwrap(), vec!["stop", "cont", "powerdown"]);
}

/// A backend with a migration: records the URI, reports a finished job.
#[derive(Default)]
struct Migrating {
    base: Fake,
    uri: Mutex<Option<String>>,
    cancelled: Mutex<bool>,
}

impl QmpBackend for Migrating {
    fn version(&self) -> VersionInfo {
        self.base.version()
    }
    fn status(&self) -> RunState {
        self.base.status()
    }
    fn stop(&self) -> Result<(), String> {
        self.base.stop()
    }
    fn cont(&self) -> Result<(), String> {
        self.base.cont()
    }
    fn system_reset(&self) -> Result<(), String> {
        self.base.system_reset()
    }
    fn system_powerdown(&self) -> Result<(), String> {
        self.base.system_powerdown()
    }
    fn quit(&self) {}
    fn cpus(&self) -> Vec<CpuInfo> {
        Vec::new()
    }
    fn blocks(&self) -> Vec<BlockInfo> {
        Vec::new()
    }
    fn kvm(&self) -> (bool, bool) {
        (false, false)
    }
    fn name(&self) -> Option<String> {
        None
    }
    fn migrate(&self, uri: &str) -> Result<(), String> {
        if !uri.starts_with("file:") {
            return Err(format!("{uri:?}: bad URI"));
        }
        *self.uri.lock().unwrap() = Some(uri.to_string());
        Ok(())
    }
    fn query_migrate(&self) -> Option<MigrationStats> {
        self.uri.lock().unwrap().as_ref().map(|_| MigrationStats {
            status: "completed",
            transferred: 100,
            remaining: 0,
            total: 100,
            dirty_pages_rate: 0,
            total_time_ms: 7,
            downtime_ms: Some(5),
            error: None,
        })
    }
    fn migrate_cancel(&self) {
        *self.cancelled.lock().unwrap() = true;
    }
}

#[test]
fn migrate_query_migrate_and_cancel() {
    let b = Migrating::default();
    let mut s = Session::default();
    send(&mut s, &b.base, r#"{"execute":"qmp_capabilities"}"#);
    let r = s.handle(br#"{"execute":"query-migrate"}"#, &b).message;
    assert_eq!(r, json!({"return": {}}), "no migration yet");
    let r = s.handle(br#"{"execute":"migrate"}"#, &b).message;
    assert_eq!(r["error"]["desc"], "Parameter 'uri' is missing");
    let r = s
        .handle(
            br#"{"execute":"migrate","arguments":{"uri":"exec:cat"}}"#,
            &b,
        )
        .message;
    assert_eq!(r["error"]["class"], "GenericError");
    let r = s
        .handle(
            br#"{"execute":"migrate","arguments":{"uri":"file:/tmp/x","detach":true}}"#,
            &b,
        )
        .message;
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(b.uri.lock().unwrap().as_deref(), Some("file:/tmp/x"));
    let r = s.handle(br#"{"execute":"query-migrate"}"#, &b).message;
    assert_eq!(r["return"]["status"], "completed");
    assert_eq!(r["return"]["ram"]["transferred"], 100);
    assert_eq!(r["return"]["ram"]["remaining"], 0);
    assert_eq!(r["return"]["downtime"], 5);
    assert_eq!(r["return"]["total-time"], 7);
    let r = s.handle(br#"{"execute":"migrate_cancel"}"#, &b).message;
    assert_eq!(r, json!({"return": {}}));
    assert!(*b.cancelled.lock().unwrap());
}

#[test]
fn migrate_incoming_needs_a_uri_and_a_deferred_machine() {
    let b = Fake::default();
    let mut s = negotiated(&b);
    let r = send(&mut s, &b, r#"{"execute":"migrate-incoming"}"#);
    assert_eq!(class(&r), "GenericError", "{r}");
    let r = send(
        &mut s,
        &b,
        r#"{"execute":"migrate-incoming","arguments":{"uri":"tcp:127.0.0.1:1"}}"#,
    );
    assert_eq!(class(&r), "GenericError", "{r}");
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("--incoming defer"),
        "{r}"
    );
    let r = send(&mut s, &b, r#"{"execute":"query-commands"}"#);
    assert!(r["return"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "migrate-incoming"));
}
