//! The QMP connection without its socket: the byte stream a client sends,
//! cut into reads of the input's sizes, through the same framer (JSON text
//! boundaries, the `MAX_MESSAGE` cap) and session (negotiation, command
//! lookup, argument checking, the commands themselves) the server runs,
//! against a backend that only records calls.
//!
//! Checked: every complete text gets exactly one reply, an object with
//! either "return" or "error" (and the client's "id" echoed when it gave
//! one); no buffered text grows past the cap; quit is asked for only after
//! a successful reply, and never by the session itself.
//!
//! It must not know the machine: the backend here is a stub.

use std::sync::atomic::{AtomicU64, Ordering};

use kite_qmp::{
    BlockInfo, CpuInfo, Frame, Framer, QmpBackend, RunState, Session, VersionInfo, MAX_MESSAGE,
};

use crate::input::Input;

#[derive(Default)]
struct Stub {
    calls: AtomicU64,
    quits: AtomicU64,
}

impl Stub {
    fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl QmpBackend for Stub {
    fn version(&self) -> VersionInfo {
        VersionInfo {
            major: 9,
            minor: 0,
            micro: 0,
            package: "kite-fuzz".into(),
        }
    }
    fn status(&self) -> RunState {
        RunState::Running
    }
    fn stop(&self) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn cont(&self) -> Result<(), String> {
        self.call();
        Err("not paused".into())
    }
    fn system_reset(&self) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn system_powerdown(&self) -> Result<(), String> {
        self.call();
        Ok(())
    }
    fn quit(&self) {
        self.quits.fetch_add(1, Ordering::Relaxed);
    }
    fn cpus(&self) -> Vec<CpuInfo> {
        vec![CpuInfo {
            index: 0,
            thread_id: 1,
        }]
    }
    fn blocks(&self) -> Vec<BlockInfo> {
        vec![BlockInfo {
            device: "virtio0".into(),
            file: "/dev/null".into(),
            read_only: true,
            size: Some(512),
        }]
    }
    fn kvm(&self) -> (bool, bool) {
        (false, false)
    }
    fn name(&self) -> Option<String> {
        Some("fuzz".into())
    }
}

pub fn qmp(data: &[u8]) {
    let stub = Stub::default();
    // A small cap too, so the too-long path is reachable from small inputs.
    let cap = if data.first().is_some_and(|b| b & 1 != 0) {
        64
    } else {
        MAX_MESSAGE
    };
    let mut framer = Framer::new(cap);
    let mut session = Session::default();
    let mut inp = Input::new(data.get(1..).unwrap_or(&[]));
    while !inp.is_empty() {
        let n = usize::from(inp.u8() % 64) + 1;
        let chunk = inp.bytes(n);
        for frame in framer.feed(chunk) {
            let text = match frame {
                Frame::Text(t) => t,
                // The server drops the client here.
                Frame::TooLong => return,
            };
            assert!(
                text.len() <= cap,
                "a {}-byte text passed a {cap}-byte cap",
                text.len()
            );
            let reply = session.handle(&text, &stub);
            let obj = reply.message.as_object();
            let Some(obj) = obj else {
                panic!("reply is not an object: {}", reply.message);
            };
            assert!(
                obj.contains_key("return") ^ obj.contains_key("error"),
                "reply has neither or both of return and error: {}",
                reply.message
            );
            if let Ok(serde_json::Value::Object(req)) = serde_json::from_slice(&text) {
                if let Some(id) = req.get("id") {
                    if obj.contains_key("return") {
                        assert_eq!(obj.get("id"), Some(id), "id not echoed");
                    }
                }
            }
            if reply.then_quit {
                assert!(obj.contains_key("return"), "quit after an error reply");
            }
        }
    }
    // The session never ends the machine itself: the server does, after a reply.
    assert_eq!(stub.quits.load(Ordering::Relaxed), 0);
}
