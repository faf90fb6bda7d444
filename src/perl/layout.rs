//! The offsets and constants of one Perl version's structures on LP64, from its headers
//! (`intrpvar.h`, `cop.h`, `sv.h`, `cv.h`, `gv.h`, `hv.h`), checked against the headers of the
//! Perl found at test time by compiling a C program with them (see the tests below).

/// One Perl minor version's layout, for a threaded (`MULTIPLICITY`) build.
pub struct Layout {
    /// `PerlInterpreter`: its size (the interpreter exports it as `PL_interp_size`), and where
    /// `Icurcop`, `Icurstackinfo` and `Iphase` are.
    pub interp_size: usize,
    pub curcop: usize,
    pub curstackinfo: usize,
    pub phase: usize,
    /// `struct cop`: `cop_line` (`line_t`, a U32) and `cop_file` (threaded builds: `char *`).
    pub cop_line: usize,
    pub cop_file: usize,
    /// `struct stackinfo`
    pub si_cxstack: usize,
    pub si_prev: usize,
    pub si_cxix: usize,
    pub si_cxmax: usize,
    pub si_type: usize,
    /// `PERL_CONTEXT`: its size, `cx_type` (U8), `blku_u16`, `blk_oldcop`, `blk_sub.cv`,
    /// `blk_eval.old_namesv`.
    pub cx_size: usize,
    pub cx_type: usize,
    pub cx_u16: usize,
    pub cx_oldcop: usize,
    pub cx_sub_cv: usize,
    pub cx_eval_namesv: usize,
    /// `struct sv`: `sv_any`, `sv_flags`, `sv_u`; in a body (`_XPV_HEAD`), `xpv_cur`.
    pub sv_any: usize,
    pub sv_flags: usize,
    pub sv_u: usize,
    pub xpv_cur: usize,
    /// `struct xpvcv`: `xcv_stash`, `xcv_gv_u`, `xcv_flags` (U32)
    pub xcv_stash: usize,
    pub xcv_gv_u: usize,
    pub xcv_flags: usize,
    /// `struct xpvgv`: `xiv_u.xivu_namehek`, `xnv_u.xgv_stash`
    pub xgv_namehek: usize,
    pub xgv_stash: usize,
    /// `struct xpvhv_with_aux`: `xhv_aux`; in it `xhv_name_u`, `xhv_name_count` (I32)
    pub xhv_aux: usize,
    pub xhv_name_u: usize,
    pub xhv_name_count: usize,
    /// `struct hek`: `hek_len` (I32), `hek_key`
    pub hek_len: usize,
    pub hek_key: usize,
    /// Constants: `SVTYPEMASK`, `SVt_PV`, `SVt_PVMG`, `SVt_PVGV`, `SVt_PVHV`, `SVt_PVCV`,
    /// `SVt_PVFM`, `SVf_OOK`, `SVf_POK`, `CVf_NAMED`
    pub svtypemask: u32,
    pub svt_pv: u32,
    pub svt_pvmg: u32,
    pub svt_pvgv: u32,
    pub svt_pvhv: u32,
    pub svt_pvcv: u32,
    pub svt_pvfm: u32,
    pub svf_ook: u32,
    pub svf_pok: u32,
    pub cvf_named: u32,
    /// `CXTYPEMASK`, `CXt_SUB`, `CXt_FORMAT`, `CXt_EVAL`, `CXp_SUB_RE_FAKE`, `CXp_TRY`
    pub cxtypemask: u8,
    pub cxt_sub: u8,
    pub cxt_format: u8,
    pub cxt_eval: u8,
    pub cxp_sub_re_fake: u8,
    pub cxp_try: u8,
    /// `OP_REQUIRE` (an eval context keeps its op's type in `blku_u16 >> 7`)
    pub op_require: u16,
    /// `PERLSI_MAIN`, `PERL_PHASE_DESTRUCT`
    pub perlsi_main: i32,
    pub phase_destruct: u32,
}

/// Perl 5.36, threaded, LP64 (Debian 12's `/usr/bin/perl`, checked with `offsetof`).
pub const V5_36: Layout = Layout {
    interp_size: 3768,
    curcop: 208,
    curstackinfo: 224,
    phase: 2512,
    cop_line: 36,
    cop_file: 48,
    si_cxstack: 8,
    si_prev: 16,
    si_cxix: 32,
    si_cxmax: 36,
    si_type: 44,
    cx_size: 104,
    cx_type: 0,
    cx_u16: 2,
    cx_oldcop: 16,
    cx_sub_cv: 72,
    cx_eval_namesv: 64,
    sv_any: 0,
    sv_flags: 12,
    sv_u: 16,
    xpv_cur: 16,
    xcv_stash: 32,
    xcv_gv_u: 56,
    xcv_flags: 92,
    xgv_namehek: 32,
    xgv_stash: 40,
    xhv_aux: 32,
    xhv_name_u: 0,
    xhv_name_count: 28,
    hek_len: 4,
    hek_key: 8,
    svtypemask: 0xff,
    svt_pv: 3,
    svt_pvmg: 7,
    svt_pvgv: 9,
    svt_pvhv: 12,
    svt_pvcv: 13,
    svt_pvfm: 14,
    svf_ook: 0x0200_0000,
    svf_pok: 0x0000_0400,
    cvf_named: 0x8000,
    cxtypemask: 0xf,
    cxt_sub: 9,
    cxt_format: 10,
    cxt_eval: 11,
    cxp_sub_re_fake: 0x80,
    cxp_try: 0x80,
    op_require: 342,
    perlsi_main: 1,
    phase_destruct: 6,
};

/// The layout for Perl `5.minor`, if supported.
pub fn layout(revision: u32, minor: u32) -> Option<&'static Layout> {
    match (revision, minor) {
        (5, 36) => Some(&V5_36),
        _ => None,
    }
}

/// The versions [`layout`] knows, for the reason given when another one runs.
pub const SUPPORTED: &[u8] = b"5.36, threaded";

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Each value the reader uses, as a C expression over perl's own headers.
    fn checks(l: &Layout) -> Vec<(&'static str, u64)> {
        vec![
            ("sizeof(PerlInterpreter)", l.interp_size as u64),
            ("offsetof(PerlInterpreter, Icurcop)", l.curcop as u64),
            (
                "offsetof(PerlInterpreter, Icurstackinfo)",
                l.curstackinfo as u64,
            ),
            ("offsetof(PerlInterpreter, Iphase)", l.phase as u64),
            ("sizeof(((PerlInterpreter *)0)->Iphase)", 4),
            ("offsetof(COP, cop_line)", l.cop_line as u64),
            ("sizeof(line_t)", 4),
            ("offsetof(COP, cop_file)", l.cop_file as u64),
            ("offsetof(PERL_SI, si_cxstack)", l.si_cxstack as u64),
            ("offsetof(PERL_SI, si_prev)", l.si_prev as u64),
            ("offsetof(PERL_SI, si_cxix)", l.si_cxix as u64),
            ("offsetof(PERL_SI, si_cxmax)", l.si_cxmax as u64),
            ("offsetof(PERL_SI, si_type)", l.si_type as u64),
            ("sizeof(PERL_CONTEXT)", l.cx_size as u64),
            ("offsetof(PERL_CONTEXT, cx_type)", l.cx_type as u64),
            (
                "offsetof(PERL_CONTEXT, cx_u.cx_blk.blku_u16)",
                l.cx_u16 as u64,
            ),
            ("offsetof(PERL_CONTEXT, blk_oldcop)", l.cx_oldcop as u64),
            ("offsetof(PERL_CONTEXT, blk_sub.cv)", l.cx_sub_cv as u64),
            ("offsetof(PERL_CONTEXT, blk_format.cv)", l.cx_sub_cv as u64),
            (
                "offsetof(PERL_CONTEXT, blk_eval.old_namesv)",
                l.cx_eval_namesv as u64,
            ),
            ("offsetof(SV, sv_any)", l.sv_any as u64),
            ("offsetof(SV, sv_flags)", l.sv_flags as u64),
            ("offsetof(SV, sv_u)", l.sv_u as u64),
            ("offsetof(XPV, xpv_cur)", l.xpv_cur as u64),
            ("offsetof(XPVCV, xcv_stash)", l.xcv_stash as u64),
            ("offsetof(XPVCV, xcv_gv_u)", l.xcv_gv_u as u64),
            ("offsetof(XPVCV, xcv_flags)", l.xcv_flags as u64),
            ("sizeof(cv_flags_t)", 4),
            ("offsetof(XPVGV, xiv_u.xivu_namehek)", l.xgv_namehek as u64),
            ("offsetof(XPVGV, xnv_u.xgv_stash)", l.xgv_stash as u64),
            ("offsetof(struct xpvhv_with_aux, xhv_aux)", l.xhv_aux as u64),
            (
                "offsetof(struct xpvhv_aux, xhv_name_u)",
                l.xhv_name_u as u64,
            ),
            (
                "offsetof(struct xpvhv_aux, xhv_name_count)",
                l.xhv_name_count as u64,
            ),
            ("offsetof(HEK, hek_len)", l.hek_len as u64),
            ("offsetof(HEK, hek_key)", l.hek_key as u64),
            ("SVTYPEMASK", u64::from(l.svtypemask)),
            ("SVt_PV", u64::from(l.svt_pv)),
            ("SVt_PVMG", u64::from(l.svt_pvmg)),
            ("SVt_PVGV", u64::from(l.svt_pvgv)),
            ("SVt_PVHV", u64::from(l.svt_pvhv)),
            ("SVt_PVCV", u64::from(l.svt_pvcv)),
            ("SVt_PVFM", u64::from(l.svt_pvfm)),
            ("SVf_OOK", u64::from(l.svf_ook)),
            ("SVf_POK", u64::from(l.svf_pok)),
            ("CVf_NAMED", u64::from(l.cvf_named)),
            ("CXTYPEMASK", u64::from(l.cxtypemask)),
            ("CXt_SUB", u64::from(l.cxt_sub)),
            ("CXt_FORMAT", u64::from(l.cxt_format)),
            ("CXt_EVAL", u64::from(l.cxt_eval)),
            ("CXp_SUB_RE_FAKE", u64::from(l.cxp_sub_re_fake)),
            ("CXp_TRY", u64::from(l.cxp_try)),
            ("OP_REQUIRE", u64::from(l.op_require)),
            ("PERLSI_MAIN", l.perlsi_main as u64),
            ("PERL_PHASE_DESTRUCT", u64::from(l.phase_destruct)),
            // Facts the reader relies on without a field of its own: an eval context keeps
            // its op type above 7 bits of `blku_u16`, and stackinfo's cxix is an I32.
            ("sizeof(((PERL_SI *)0)->si_cxix)", 4),
            ("sizeof(((PERL_CONTEXT *)0)->cx_u.cx_blk.blku_u16)", 2),
        ]
    }

    /// `perl -MConfig -e ...`: one of its configuration values.
    fn config(name: &str) -> Option<String> {
        let out = Command::new("perl")
            .args(["-MConfig", "-e", &format!("print $Config{{{name}}}")])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every offset and constant the reader uses, checked against the headers of the Perl on
    /// this machine (its `CORE` folder, which Debian ships in `libperl5.36`, a dependency of
    /// `perl`): a wrong one fails here, in CI, not in a user's process.
    #[test]
    fn offsets_match_perls_own_headers() {
        let archlib = config("archlibexp").unwrap_or_default();
        if !crate::layout_check::have(std::path::Path::new(&archlib), "perl") {
            return;
        }
        let version: Vec<u32> = config("version")
            .unwrap_or_default()
            .split('.')
            .filter_map(|p| p.parse().ok())
            .collect();
        let threaded = config("useithreads").as_deref() == Some("define");
        let Some(l) = layout(version[0], version[1]).filter(|_| threaded) else {
            // This machine's Perl is one the reader refuses; nothing to compare.
            eprintln!("note: perl {version:?} (threads: {threaded}) has no layout here: skipped");
            return;
        };
        let core = std::path::Path::new(&archlib).join("CORE");
        if !crate::layout_check::have(&core.join("perl.h"), "perl") {
            return;
        }
        let mut cflags: Vec<String> = config("ccflags")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        cflags.push(format!("-I{}", core.display()));
        let wrong = crate::layout_check::mismatches(
            "#include <EXTERN.h>\n#include <perl.h>",
            &cflags,
            &checks(l),
        );
        assert!(wrong.is_empty(), "perl {version:?}:\n{}", wrong.join("\n"));
    }

    #[test]
    fn only_known_versions_have_a_layout() {
        assert!(layout(5, 36).is_some());
        for (r, v) in [(5, 34), (5, 38), (5, 40), (7, 0)] {
            assert!(layout(r, v).is_none(), "{r}.{v}");
        }
    }
}
