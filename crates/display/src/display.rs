//! The shared display handle: one surface, rendered on demand, with damage
//! handed to each viewer.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::input::InputSink;
use crate::surface::{Damage, Surface};

/// The device side of a screen: brings `surface` up to date with what the
/// guest shows.
pub trait Renderer: Send {
    /// Redraws what changed since the last call into `surface` (resizing it
    /// when the guest changed mode; a resize means [`Damage::Full`]) and says
    /// what changed. Called only when a viewer asks, never on a timer of its own.
    fn render(&mut self, surface: &mut Surface) -> Damage;
}

/// What a viewer has not seen yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The surface size now.
    pub width: u32,
    pub height: u32,
    /// The size changed since this viewer's last update (send DesktopSize).
    pub resized: bool,
    /// What changed since this viewer's last update.
    pub damage: Damage,
}

struct ViewerState {
    damage: Damage,
    resized: bool,
}

struct Inner {
    renderer: Mutex<Box<dyn Renderer>>,
    surface: Mutex<Surface>,
    viewers: Mutex<Vec<Weak<Mutex<ViewerState>>>>,
    input: Mutex<Arc<dyn InputSink>>,
}

/// A renderer for a screen with no device behind it yet (0x0, never damaged).
pub struct Blank;

impl Renderer for Blank {
    fn render(&mut self, _surface: &mut Surface) -> Damage {
        Damage::None
    }
}

/// A VM's screen, shared by every viewer (clone it freely).
#[derive(Clone)]
pub struct Display {
    inner: Arc<Inner>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A viewer that panicked mid-update leaves plain pixel data behind: still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Display {
    pub fn new(renderer: Box<dyn Renderer>, input: Arc<dyn InputSink>) -> Self {
        Display {
            inner: Arc::new(Inner {
                renderer: Mutex::new(renderer),
                surface: Mutex::new(Surface::new(0, 0)),
                viewers: Mutex::new(Vec::new()),
                input: Mutex::new(input),
            }),
        }
    }

    /// Renders what the guest changed and hands the damage to every viewer.
    pub fn refresh(&self) {
        let mut renderer = lock(&self.inner.renderer);
        let mut surface = lock(&self.inner.surface);
        let (w0, h0) = (surface.width(), surface.height());
        let damage = renderer.render(&mut surface);
        let resized = (surface.width(), surface.height()) != (w0, h0);
        let damage = if resized { Damage::Full } else { damage };
        if damage.is_none() {
            lock(&self.inner.viewers).retain(|v| v.strong_count() > 0);
            return;
        }
        let (w, h) = (surface.width(), surface.height());
        let mut viewers = lock(&self.inner.viewers);
        viewers.retain(|v| match v.upgrade() {
            Some(v) => {
                let mut v = lock(&v);
                v.damage.add(damage.clone(), w, h);
                v.resized |= resized;
                true
            }
            None => false,
        });
    }

    /// A new viewer; its first update is the whole screen.
    pub fn subscribe(&self) -> Subscription {
        let state = Arc::new(Mutex::new(ViewerState {
            damage: Damage::Full,
            resized: true,
        }));
        lock(&self.inner.viewers).push(Arc::downgrade(&state));
        Subscription {
            display: self.clone(),
            state,
        }
    }

    /// Runs `f` on the current surface (call [`Display::refresh`] first for
    /// an up-to-date picture).
    pub fn with_surface<R>(&self, f: impl FnOnce(&Surface) -> R) -> R {
        f(&lock(&self.inner.surface))
    }

    /// The surface as it is now, freshly rendered.
    pub fn snapshot(&self) -> Surface {
        self.refresh();
        lock(&self.inner.surface).clone()
    }

    /// Where viewers' keyboard and pointer events go.
    pub fn input(&self) -> Arc<dyn InputSink> {
        lock(&self.inner.input).clone()
    }

    /// Sends one input event to the current sink.
    pub fn send_input(&self, event: crate::input::InputEvent) {
        self.input().send(event);
    }

    /// Points this display at a new device (the machine was rebuilt, e.g. on
    /// reboot): viewers stay connected and get the new screen in full.
    pub fn attach(&self, renderer: Box<dyn Renderer>, input: Arc<dyn InputSink>) {
        *lock(&self.inner.renderer) = renderer;
        *lock(&self.inner.input) = input;
        lock(&self.inner.surface).resize(0, 0);
        for v in lock(&self.inner.viewers).iter().filter_map(Weak::upgrade) {
            let mut v = lock(&v);
            v.damage = Damage::Full;
            v.resized = true;
        }
    }
}

/// One viewer's view of the display.
pub struct Subscription {
    display: Display,
    state: Arc<Mutex<ViewerState>>,
}

impl Subscription {
    /// Renders, then returns (and forgets) what this viewer has not seen.
    pub fn poll(&self) -> Update {
        self.display.refresh();
        let (width, height) = self.display.with_surface(|s| (s.width(), s.height()));
        let mut st = lock(&self.state);
        Update {
            width,
            height,
            resized: std::mem::take(&mut st.resized),
            damage: std::mem::take(&mut st.damage),
        }
    }

    /// Marks the whole screen as unseen (a client asked for a full update).
    pub fn invalidate(&self) {
        lock(&self.state).damage = Damage::Full;
    }

    pub fn display(&self) -> &Display {
        &self.display
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::NullInput;
    use crate::surface::Rect;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Draws a 1-pixel dot at a moving x each render; resizes on request.
    struct Dots {
        x: Arc<AtomicU32>,
        size: Arc<AtomicU32>,
        renders: Arc<AtomicU32>,
    }

    impl Renderer for Dots {
        fn render(&mut self, s: &mut Surface) -> Damage {
            self.renders.fetch_add(1, Ordering::SeqCst);
            let size = self.size.load(Ordering::SeqCst);
            if s.resize(size, size) {
                return Damage::Full;
            }
            let x = self.x.swap(u32::MAX, Ordering::SeqCst);
            if x == u32::MAX {
                return Damage::None;
            }
            s.fill(Rect::new(x, 0, 1, 1), 0xffffff);
            Damage::Rects(vec![Rect::new(x, 0, 1, 1)])
        }
    }

    #[test]
    fn each_viewer_gets_its_own_damage_and_resizes() {
        let x = Arc::new(AtomicU32::new(u32::MAX));
        let size = Arc::new(AtomicU32::new(8));
        let renders = Arc::new(AtomicU32::new(0));
        let d = Display::new(
            Box::new(Dots {
                x: x.clone(),
                size: size.clone(),
                renders: renders.clone(),
            }),
            Arc::new(NullInput),
        );
        assert_eq!(renders.load(Ordering::SeqCst), 0, "no viewer, no render");
        let a = d.subscribe();
        let b = d.subscribe();
        let first = a.poll();
        assert!(first.resized);
        assert_eq!(first.damage.rects(8, 8), vec![Rect::new(0, 0, 8, 8)]);
        assert_eq!(a.poll().damage, Damage::None);
        x.store(3, Ordering::SeqCst);
        assert_eq!(a.poll().damage.rects(8, 8), vec![Rect::new(3, 0, 1, 1)]);
        // b never polled: it still owes the full screen, which covers the dot.
        let ub = b.poll();
        assert!(ub.resized);
        assert_eq!(ub.damage, Damage::Full);
        size.store(16, Ordering::SeqCst);
        let ua = a.poll();
        assert!(ua.resized && (ua.width, ua.height) == (16, 16));
        assert_eq!(
            d.snapshot().pixel(3, 0),
            Some(0),
            "a resize clears the surface"
        );
        drop(b);
        d.refresh();
        assert_eq!(
            lock(&d.inner.viewers).len(),
            1,
            "dropped viewers are forgotten"
        );
    }
}
