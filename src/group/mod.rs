//! Finite rotation/reflection groups as plain Rust: no tensors here.
//!
//! `C_n` holds the rotations `R^k` by `k * 360/n` degrees; `D_n` adds the
//! reflection `M` (mirror along the vertical axis, `x -> -x`) with
//! `M R M = R^-1`. An element is `(k, s)` = `R^k M^s`; it is stored as the
//! index `s * n + k`, so the rotations come first.
//!
//! Conventions (see `docs/conventions.md`):
//! - composition `(k1,s1)(k2,s2) = (k1 + (-1)^s1 k2 mod n, s1 xor s2)`;
//! - left regular representation `[lambda(t) V]_g = V_{t^-1 g}`;
//! - right regular representation `[rho(h) V]_g = V_{g h}`.

pub mod action;
pub mod resample;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The groups eqae builds networks for: the paper's four (C4, D4, C12,
/// D12) and the same construction with finer rotations (C8, D8, C16, D16,
/// C24, D24). Every `C_n`/`D_n` with `n = 4 m` is the p4 (or, for D4, p4m)
/// network applied to the image turned by `j * 90/m` degrees, `j < m`
/// (and mirrored, for `D_n` with `n > 4`): see `model::branches`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// 90-degree rotations (the paper's p4, on the pixel grid).
    #[serde(alias = "p4")]
    C4,
    /// 90-degree rotations and reflections (p4m).
    #[serde(alias = "p4m")]
    D4,
    /// 45-degree rotations.
    C8,
    /// 45-degree rotations and reflections (16 elements).
    D8,
    /// 30-degree rotations.
    C12,
    /// 30-degree rotations and reflections (24 elements).
    D12,
    /// 22.5-degree rotations.
    C16,
    /// 22.5-degree rotations and reflections (32 elements).
    D16,
    /// 15-degree rotations.
    C24,
    /// 15-degree rotations and reflections (48 elements).
    D24,
}

impl GroupKind {
    /// Every group the project knows, in a fixed order.
    pub const ALL: [GroupKind; 10] = [
        GroupKind::C4,
        GroupKind::D4,
        GroupKind::C8,
        GroupKind::D8,
        GroupKind::C12,
        GroupKind::D12,
        GroupKind::C16,
        GroupKind::D16,
        GroupKind::C24,
        GroupKind::D24,
    ];

    /// The paper's four groups.
    pub const PAPER: [GroupKind; 4] =
        [GroupKind::C4, GroupKind::D4, GroupKind::C12, GroupKind::D12];

    /// Number of rotations n (the group is `C_n` or `D_n`).
    pub fn rotations(self) -> usize {
        match self {
            GroupKind::C4 | GroupKind::D4 => 4,
            GroupKind::C8 | GroupKind::D8 => 8,
            GroupKind::C12 | GroupKind::D12 => 12,
            GroupKind::C16 | GroupKind::D16 => 16,
            GroupKind::C24 | GroupKind::D24 => 24,
        }
    }

    /// Whether the group has reflections (`D_n`).
    pub fn dihedral(self) -> bool {
        matches!(
            self,
            GroupKind::D4 | GroupKind::D8 | GroupKind::D12 | GroupKind::D16 | GroupKind::D24
        )
    }

    /// The group itself.
    pub fn group(self) -> Group {
        if self.dihedral() {
            Group::dihedral(self.rotations())
        } else {
            Group::cyclic(self.rotations())
        }
    }

    /// The group whose elements act exactly on the pixel grid and that the
    /// spatial network is built for: D4 for D4, C4 for every other group
    /// (the larger dihedral groups mirror the input themselves, see
    /// `model::branches`).
    pub fn grid_group(self) -> Group {
        match self {
            GroupKind::D4 => Group::dihedral(4),
            _ => Group::cyclic(4),
        }
    }

    /// Lower-case name used in configs and file names.
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::C4 => "c4",
            GroupKind::D4 => "d4",
            GroupKind::C8 => "c8",
            GroupKind::D8 => "d8",
            GroupKind::C12 => "c12",
            GroupKind::D12 => "d12",
            GroupKind::C16 => "c16",
            GroupKind::D16 => "d16",
            GroupKind::C24 => "c24",
            GroupKind::D24 => "d24",
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A group or element name that was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not one of the groups [`GroupKind::ALL`] (or p4, p4m).
    #[error("unknown group '{0}' (expected one of p4, p4m, {names})", names = GroupKind::ALL.map(|k| k.name()).join(", "))]
    UnknownGroup(String),
    /// Not of the form e, R, R^k, M or R^k M.
    #[error("'{0}' is not a group element (expected e, R^k, M, R^k M, or all)")]
    NotAnElement(String),
    /// A well-formed element the group lacks: `R^k` with k >= n, or a
    /// reflection in a cyclic group.
    #[error("'{name}' is not an element of this group (expected e, R^k with k < {n}{mirrors}, or all)", mirrors = reflection_names(.dihedral))]
    NotInGroup {
        name: String,
        n: usize,
        dihedral: bool,
    },
}

/// The reflections' names in [`NameError::NotInGroup`]'s message.
fn reflection_names(dihedral: &bool) -> &'static str {
    if *dihedral {
        ", M, R^k M"
    } else {
        ""
    }
}

impl FromStr for GroupKind {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.to_ascii_lowercase();
        match s.as_str() {
            "p4" => return Ok(GroupKind::C4),
            "p4m" => return Ok(GroupKind::D4),
            _ => {}
        }
        GroupKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or(NameError::UnknownGroup(s))
    }
}

/// One element `R^k M^s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    /// Rotation power k, in 0..n.
    pub rotation: usize,
    /// Whether the mirror M is applied (first, before the rotation).
    pub reflection: bool,
}

impl fmt::Display for Element {
    /// `e`, `M`, `R^k` or `R^k M`, as configs and reports write elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.rotation, self.reflection) {
            (0, false) => f.write_str("e"),
            (0, true) => f.write_str("M"),
            (k, false) => write!(f, "R^{k}"),
            (k, true) => write!(f, "R^{k} M"),
        }
    }
}

impl FromStr for Element {
    type Err = NameError;
    /// `e`, `R` (= `R^1`), `R^k`, `M`, `R M` or `R^k M`, whatever the group;
    /// [`Group::find`] says whether a group holds it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NameError::NotAnElement(s.to_string());
        let (rotation, reflection) = match s.trim().strip_suffix('M').map(str::trim_end) {
            Some(rest) => (rest, true),
            None => (s.trim(), false),
        };
        let rotation = match rotation {
            "" if reflection => 0,
            "e" if !reflection => 0,
            "R" => 1,
            r => r
                .strip_prefix("R^")
                .and_then(|k| k.parse().ok())
                .ok_or_else(bad)?,
        };
        Ok(Element {
            rotation,
            reflection,
        })
    }
}

/// A cyclic group `C_n` or dihedral group `D_n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Number of rotations n.
    pub n: usize,
    /// Whether the group contains reflections (D_n).
    pub dihedral: bool,
}

impl Group {
    /// `C_n`.
    pub fn cyclic(n: usize) -> Self {
        assert!(n > 0, "a cyclic group needs n > 0");
        Group { n, dihedral: false }
    }

    /// `D_n`.
    pub fn dihedral(n: usize) -> Self {
        assert!(n > 0, "a dihedral group needs n > 0");
        Group { n, dihedral: true }
    }

    /// |G|.
    pub fn order(&self) -> usize {
        if self.dihedral {
            2 * self.n
        } else {
            self.n
        }
    }

    /// The element with index `i` (`i = s * n + k`).
    pub fn element(&self, i: usize) -> Element {
        assert!(i < self.order(), "element index {i} out of range");
        Element {
            rotation: i % self.n,
            reflection: i >= self.n,
        }
    }

    /// Index of an element.
    pub fn index(&self, e: Element) -> usize {
        assert!(e.rotation < self.n && (self.dihedral || !e.reflection));
        e.rotation + if e.reflection { self.n } else { 0 }
    }

    /// Every element, in index order (tests iterate over all of them).
    pub fn elements(&self) -> impl Iterator<Item = Element> + '_ {
        (0..self.order()).map(|i| self.element(i))
    }

    /// The identity's index (always 0).
    pub fn identity(&self) -> usize {
        0
    }

    /// Index of `R^k`.
    pub fn rotation(&self, k: usize) -> usize {
        k % self.n
    }

    /// Index of `M` (only in dihedral groups).
    pub fn mirror(&self) -> Option<usize> {
        self.dihedral.then_some(self.n)
    }

    /// Generators: `R`, and `M` for dihedral groups.
    pub fn generators(&self) -> Vec<usize> {
        let mut g = vec![self.rotation(1)];
        g.extend(self.mirror());
        g
    }

    /// Index of `a b`.
    pub fn compose(&self, a: usize, b: usize) -> usize {
        let (ea, eb) = (self.element(a), self.element(b));
        let k = if ea.reflection {
            (ea.rotation + self.n - eb.rotation) % self.n
        } else {
            (ea.rotation + eb.rotation) % self.n
        };
        self.index(Element {
            rotation: k,
            reflection: ea.reflection ^ eb.reflection,
        })
    }

    /// Index of `a^-1`. Reflections are their own inverses.
    pub fn inverse(&self, a: usize) -> usize {
        let e = self.element(a);
        if e.reflection {
            a
        } else {
            self.index(Element {
                rotation: (self.n - e.rotation) % self.n,
                reflection: false,
            })
        }
    }

    /// `table[a][b] = a b`.
    pub fn cayley_table(&self) -> Vec<Vec<usize>> {
        (0..self.order())
            .map(|a| (0..self.order()).map(|b| self.compose(a, b)).collect())
            .collect()
    }

    /// Left regular action as a row gather: `[lambda(t) V]_g = V[perm[g]]`
    /// with `perm[g] = t^-1 g`.
    pub fn left_regular_perm(&self, t: usize) -> Vec<usize> {
        let ti = self.inverse(t);
        (0..self.order()).map(|g| self.compose(ti, g)).collect()
    }

    /// Right regular action as a row gather: `[rho(h) V]_g = V[perm[g]]`
    /// with `perm[g] = g h`.
    pub fn right_regular_perm(&self, h: usize) -> Vec<usize> {
        (0..self.order()).map(|g| self.compose(g, h)).collect()
    }

    /// Angle of the rotation part in degrees, counter-clockwise.
    pub fn angle_degrees(&self, a: usize) -> f64 {
        self.element(a).rotation as f64 * 360.0 / self.n as f64
    }

    /// Whether the element acts exactly on a square pixel grid
    /// (a multiple of 90 degrees, with or without the mirror).
    pub fn is_grid_exact(&self, a: usize) -> bool {
        (self.element(a).rotation * 4).is_multiple_of(self.n)
    }

    /// Human-readable name such as `R^3 M`.
    pub fn element_name(&self, a: usize) -> String {
        self.element(a).to_string()
    }

    /// The index of `e`, or why this group lacks it (`R^k` with k >= n, or
    /// a reflection in a cyclic group).
    pub fn find(&self, e: Element) -> Result<usize, NameError> {
        if e.rotation < self.n && (self.dihedral || !e.reflection) {
            Ok(self.index(e))
        } else {
            Err(NameError::NotInGroup {
                name: e.to_string(),
                n: self.n,
                dihedral: self.dihedral,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One shared check of the group axioms and regular representations.
    fn check_group(g: &Group) {
        let n = g.order();
        let e = g.identity();
        let table = g.cayley_table();
        for (a, row) in table.iter().enumerate() {
            // identity and inverse
            assert_eq!(g.compose(e, a), a);
            assert_eq!(g.compose(a, e), a);
            assert_eq!(g.compose(a, g.inverse(a)), e);
            assert_eq!(g.compose(g.inverse(a), a), e);
            // Cayley table rows are permutations (Latin square)
            let mut row = row.clone();
            row.sort_unstable();
            assert_eq!(row, (0..n).collect::<Vec<_>>());
            for b in 0..n {
                for c in 0..n {
                    // associativity
                    assert_eq!(g.compose(g.compose(a, b), c), g.compose(a, g.compose(b, c)));
                }
            }
        }
    }

    /// perm composition as gathers: applying `p` after `q` gathers with q[p[g]].
    fn after(p: &[usize], q: &[usize]) -> Vec<usize> {
        // out = P(Q(V)); Q(V)[g] = V[q[g]]; P(W)[g] = W[p[g]] = V[q[p[g]]]
        p.iter().map(|&i| q[i]).collect()
    }

    fn check_regular(g: &Group) {
        let n = g.order();
        for a in 0..n {
            for b in 0..n {
                // lambda(a) lambda(b) = lambda(ab)
                let lab = after(&g.left_regular_perm(a), &g.left_regular_perm(b));
                assert_eq!(lab, g.left_regular_perm(g.compose(a, b)));
                // rho(a) rho(b) = rho(ab)
                let rab = after(&g.right_regular_perm(a), &g.right_regular_perm(b));
                assert_eq!(rab, g.right_regular_perm(g.compose(a, b)));
                // left and right regular actions commute
                let lr = after(&g.left_regular_perm(a), &g.right_regular_perm(b));
                let rl = after(&g.right_regular_perm(b), &g.left_regular_perm(a));
                assert_eq!(lr, rl);
            }
        }
    }

    #[test]
    fn every_group_satisfies_axioms_and_regular_reps() {
        for kind in GroupKind::ALL {
            let g = kind.group();
            check_group(&g);
            check_regular(&g);
        }
    }

    #[test]
    fn orders_and_relations() {
        assert_eq!(GroupKind::C4.group().order(), 4);
        assert_eq!(GroupKind::D4.group().order(), 8);
        assert_eq!(GroupKind::C12.group().order(), 12);
        assert_eq!(GroupKind::D12.group().order(), 24);
        for kind in [GroupKind::D4, GroupKind::D12] {
            let g = kind.group();
            let (r, m) = (g.rotation(1), g.mirror().unwrap());
            // M R M = R^-1
            assert_eq!(g.compose(g.compose(m, r), m), g.inverse(r));
            assert_eq!(g.compose(m, m), 0);
        }
        let d4 = GroupKind::D4.group();
        // D4 is not abelian
        assert_ne!(d4.compose(1, 4), d4.compose(4, 1));
    }

    #[test]
    fn cayley_table_of_c4_is_addition_mod_4() {
        let t = GroupKind::C4.group().cayley_table();
        for (a, row) in t.iter().enumerate() {
            for (b, &ab) in row.iter().enumerate() {
                assert_eq!(ab, (a + b) % 4);
            }
        }
    }

    #[test]
    fn group_names_parse() {
        assert_eq!("p4m".parse::<GroupKind>().unwrap(), GroupKind::D4);
        assert_eq!("D12".parse::<GroupKind>().unwrap(), GroupKind::D12);
        assert_eq!("d24".parse::<GroupKind>().unwrap(), GroupKind::D24);
        for kind in GroupKind::ALL {
            assert_eq!(kind.name().parse::<GroupKind>().unwrap(), kind);
            assert_eq!(kind.group().n, kind.rotations());
        }
        let err = "d5".parse::<GroupKind>().unwrap_err().to_string();
        assert!(
            err.contains("unknown group 'd5'") && err.contains("d24"),
            "{err}"
        );
    }
}
