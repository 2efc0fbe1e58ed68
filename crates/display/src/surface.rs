//! A screen image: 32-bit pixels 0x00RRGGBB, row-major, no padding.

/// A rectangle in pixels, `x`/`y` its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Rect { x, y, w, h }
    }

    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// The part of `self` inside a `width` x `height` screen.
    pub fn clip(&self, width: u32, height: u32) -> Rect {
        let x = self.x.min(width);
        let y = self.y.min(height);
        let w = self.w.min(width - x);
        let h = self.h.min(height - y);
        Rect { x, y, w, h }
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let x0 = self.x.min(other.x);
        let y0 = self.y.min(other.y);
        let x1 = (self.x + self.w).max(other.x + other.w);
        let y1 = (self.y + self.h).max(other.y + other.h);
        Rect::new(x0, y0, x1 - x0, y1 - y0)
    }

    /// Whether the two overlap or touch edge to edge.
    pub fn touches(&self, other: &Rect) -> bool {
        self.x <= other.x + other.w
            && other.x <= self.x + self.w
            && self.y <= other.y + other.h
            && other.y <= self.y + self.h
    }

    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }
}

/// What changed on a surface since the last render.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Damage {
    /// Nothing changed.
    #[default]
    None,
    /// These rectangles changed (clipped to the surface).
    Rects(Vec<Rect>),
    /// Everything changed, or the size did.
    Full,
}

/// At most this many separate rectangles are kept; beyond it they merge.
const MAX_RECTS: usize = 64;

impl Damage {
    /// Adds `other` to `self`, merging rectangles that touch, and collapsing to
    /// one bounding rectangle (or `Full`) when there are too many.
    pub fn add(&mut self, other: Damage, width: u32, height: u32) {
        match other {
            Damage::None => {}
            Damage::Full => *self = Damage::Full,
            Damage::Rects(rects) => {
                for r in rects {
                    self.add_rect(r, width, height);
                }
            }
        }
    }

    pub fn add_rect(&mut self, rect: Rect, width: u32, height: u32) {
        let mut rect = rect.clip(width, height);
        if rect.is_empty() {
            return;
        }
        match self {
            Damage::Full => {}
            Damage::None => *self = Damage::Rects(vec![rect]),
            Damage::Rects(list) => {
                // Merge with every rectangle it touches, repeatedly.
                let mut i = 0;
                while i < list.len() {
                    if list[i].touches(&rect) {
                        rect = rect.union(&list.swap_remove(i));
                        i = 0;
                    } else {
                        i += 1;
                    }
                }
                list.push(rect);
                if list.len() > MAX_RECTS {
                    let all = list.iter().fold(Rect::default(), |a, r| a.union(r));
                    *list = vec![all];
                }
                if list.len() == 1 && list[0] == Rect::new(0, 0, width, height) {
                    *self = Damage::Full;
                }
            }
        }
    }

    /// The rectangles to send for a `width` x `height` surface.
    pub fn rects(&self, width: u32, height: u32) -> Vec<Rect> {
        match self {
            Damage::None => Vec::new(),
            Damage::Full if width == 0 || height == 0 => Vec::new(),
            Damage::Full => vec![Rect::new(0, 0, width, height)],
            Damage::Rects(list) => list.clone(),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Damage::None)
    }
}

impl Default for Rect {
    fn default() -> Self {
        Rect::new(0, 0, 0, 0)
    }
}

/// The screen image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Surface {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
}

/// The largest surface a renderer may ask for (16384 x 16384 pixels, 1 GiB);
/// larger requests are clamped, so a guest cannot make the host allocate
/// without bound.
pub const MAX_DIMENSION: u32 = 16384;

impl Surface {
    /// A black surface of the given size (each side clamped to [`MAX_DIMENSION`]).
    pub fn new(width: u32, height: u32) -> Self {
        let width = width.min(MAX_DIMENSION);
        let height = height.min(MAX_DIMENSION);
        Surface {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Changes the size; the contents become black. Returns whether the size changed.
    pub fn resize(&mut self, width: u32, height: u32) -> bool {
        let width = width.min(MAX_DIMENSION);
        let height = height.min(MAX_DIMENSION);
        if width == self.width && height == self.height {
            return false;
        }
        self.width = width;
        self.height = height;
        self.pixels.clear();
        self.pixels.resize(width as usize * height as usize, 0);
        true
    }

    /// All pixels, row by row, 0x00RRGGBB.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    pub fn pixels_mut(&mut self) -> &mut [u32] {
        &mut self.pixels
    }

    /// Row `y` (empty when out of range).
    pub fn row(&self, y: u32) -> &[u32] {
        if y >= self.height {
            return &[];
        }
        let w = self.width as usize;
        &self.pixels[y as usize * w..(y as usize + 1) * w]
    }

    pub fn row_mut(&mut self, y: u32) -> &mut [u32] {
        if y >= self.height {
            return &mut [];
        }
        let w = self.width as usize;
        &mut self.pixels[y as usize * w..(y as usize + 1) * w]
    }

    /// The pixel at (x, y), or None outside the surface.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        (x < self.width && y < self.height)
            .then(|| self.pixels[y as usize * self.width as usize + x as usize])
    }

    /// Fills a rectangle (clipped) with one colour.
    pub fn fill(&mut self, rect: Rect, rgb: u32) {
        let r = rect.clip(self.width, self.height);
        for y in r.y..r.y + r.h {
            let row = self.row_mut(y);
            row[r.x as usize..(r.x + r.w) as usize].fill(rgb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_rects_merge_and_distant_ones_stay_apart() {
        let mut d = Damage::None;
        d.add_rect(Rect::new(0, 0, 10, 10), 100, 100);
        d.add_rect(Rect::new(10, 0, 10, 10), 100, 100);
        d.add_rect(Rect::new(50, 50, 5, 5), 100, 100);
        let mut rects = d.rects(100, 100);
        rects.sort_by_key(|r| r.x);
        assert_eq!(
            rects,
            vec![Rect::new(0, 0, 20, 10), Rect::new(50, 50, 5, 5)]
        );
    }

    #[test]
    fn damage_is_clipped_and_covering_everything_becomes_full() {
        let mut d = Damage::None;
        d.add_rect(Rect::new(90, 90, 50, 50), 100, 100);
        assert_eq!(d.rects(100, 100), vec![Rect::new(90, 90, 10, 10)]);
        d.add_rect(Rect::new(0, 0, 100, 100), 100, 100);
        assert_eq!(d, Damage::Full);
        let mut off = Damage::None;
        off.add_rect(Rect::new(200, 0, 5, 5), 100, 100);
        assert!(off.is_none());
    }

    #[test]
    fn too_many_rects_collapse_to_their_bounds() {
        let mut d = Damage::None;
        for i in 0..(MAX_RECTS as u32 + 1) {
            d.add_rect(Rect::new(i * 3, i * 3, 1, 1), 1000, 1000);
        }
        assert_eq!(d.rects(1000, 1000).len(), 1);
        assert_eq!(d.rects(1000, 1000)[0], Rect::new(0, 0, 193, 193));
    }

    #[test]
    fn surfaces_are_clamped_and_rows_bounds_checked() {
        let mut s = Surface::new(4, 2);
        s.fill(Rect::new(1, 1, 10, 10), 0xff0000);
        assert_eq!(s.row(1), &[0, 0xff0000, 0xff0000, 0xff0000]);
        assert_eq!(s.row(2), &[] as &[u32]);
        assert_eq!(s.pixel(4, 0), None);
        assert!(s.resize(u32::MAX, 1));
        assert_eq!(s.width(), MAX_DIMENSION);
    }
}
