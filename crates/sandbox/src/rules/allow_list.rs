//! An allow-list under construction: system calls, each allowed outright or
//! when one of its argument patterns matches; compiled to BPF by seccompiler.
//! It knows nothing of roles or of which calls anyone needs.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// A test on one argument (compared as 32 bits unless `wide`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arg {
    index: u8,
    op: Op,
    value: u64,
    wide: bool,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    /// `(arg & mask) == value`.
    Masked(u64),
}

impl Arg {
    /// Argument `index` equals `value` (low 32 bits).
    pub(crate) fn eq(index: u8, value: u64) -> Arg {
        Arg {
            index,
            op: Op::Eq,
            value,
            wide: false,
        }
    }

    /// Argument `index` (all 64 bits) equals `value`.
    pub(crate) fn eq64(index: u8, value: u64) -> Arg {
        Arg {
            wide: true,
            ..Arg::eq(index, value)
        }
    }

    /// Argument `index` differs from `value` (low 32 bits).
    pub(crate) fn ne(index: u8, value: u64) -> Arg {
        Arg {
            op: Op::Ne,
            ..Arg::eq(index, value)
        }
    }

    /// `(argument & mask) == value` (low 32 bits).
    pub(crate) fn masked(index: u8, mask: u64, value: u64) -> Arg {
        Arg {
            op: Op::Masked(mask),
            ..Arg::eq(index, value)
        }
    }

    fn condition(self) -> Result<SeccompCondition, seccompiler::BackendError> {
        let op = match self.op {
            Op::Eq => SeccompCmpOp::Eq,
            Op::Ne => SeccompCmpOp::Ne,
            Op::Masked(m) => SeccompCmpOp::MaskedEq(m),
        };
        let len = if self.wide {
            SeccompCmpArgLen::Qword
        } else {
            SeccompCmpArgLen::Dword
        };
        SeccompCondition::new(self.index, len, op, self.value)
    }
}

/// Each call: `None` = allowed whatever its arguments; `Some(rules)` =
/// allowed when every test of one rule holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct AllowList {
    calls: BTreeMap<i64, Option<Vec<Vec<Arg>>>>,
}

impl AllowList {
    /// Allow each of `nrs` whatever its arguments.
    pub(crate) fn any(&mut self, nrs: &[libc::c_long]) -> &mut Self {
        for &nr in nrs {
            self.calls.insert(nr, None);
        }
        self
    }

    /// Allow `nr` when all of `args` hold (ORed with its other rules).
    pub(crate) fn when(&mut self, nr: libc::c_long, args: &[Arg]) -> &mut Self {
        // A call already allowed outright (`None`) stays so.
        if let Some(rules) = self.calls.entry(nr).or_insert_with(|| Some(Vec::new())) {
            rules.push(args.to_vec());
        }
        self
    }

    /// Allow `nr` when argument `index` is one of `values`.
    pub(crate) fn when_arg_in(&mut self, nr: libc::c_long, index: u8, values: &[u64]) -> &mut Self {
        for &v in values {
            self.when(nr, &[Arg::eq(index, v)]);
        }
        self
    }

    /// Whether `nr` is on the list at all (with or without conditions).
    #[cfg(test)]
    pub(crate) fn mentions(&self, nr: libc::c_long) -> bool {
        self.calls.contains_key(&nr)
    }

    /// The BPF program: listed calls allowed, anything else gets `otherwise`.
    pub(crate) fn compile(
        &self,
        otherwise: SeccompAction,
    ) -> Result<BpfProgram, seccompiler::BackendError> {
        let mut rules = BTreeMap::new();
        for (&nr, conds) in &self.calls {
            let chain = match conds {
                None => Vec::new(),
                Some(alternatives) => alternatives
                    .iter()
                    .map(|args| {
                        let conditions = args
                            .iter()
                            .map(|a| a.condition())
                            .collect::<Result<Vec<_>, _>>()?;
                        SeccompRule::new(conditions)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            rules.insert(nr, chain);
        }
        let filter =
            SeccompFilter::new(rules, otherwise, SeccompAction::Allow, TargetArch::x86_64)?;
        filter.try_into()
    }
}
