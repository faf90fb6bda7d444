//! `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp` and `strlen` inside the library.
//!
//! The compiler calls the first five for copies, fills and comparisons it does not inline, and
//! GCC's unwinder calls `strlen`. Imported from libc, each would be looked up by the loader on
//! every exec of every audited program (about 800 instructions apiece, with `BIND_NOW`); defined
//! here, hidden, they bind inside the library at link time. Nothing is exported: the program's
//! own calls still go to libc's.
//!
//! They are plain: the string instructions on x86_64, eight bytes at a time (`rep movsq`,
//! `rep stosq`) and the rest byte by byte, with a byte loop for short copies, where the string
//! instructions' start-up cost would dominate; byte loops on arm64. Nothing on the
//! unwatched path uses them; an event copies a few kilobytes.
//!
//! The code is assembly rather than Rust because the compiler turns a copy loop in Rust back
//! into a call to `memcpy`. It is assembled under its own names (`sigaudit_memcpy`, ...), which
//! the unit tests call; the library build adds the C names as hidden aliases (the test program
//! keeps libc's).

core::arch::global_asm!(
    ".globl sigaudit_memcpy, sigaudit_memmove, sigaudit_memset, sigaudit_memcmp, sigaudit_strlen",
    ".hidden sigaudit_memcpy, sigaudit_memmove, sigaudit_memset, sigaudit_memcmp, sigaudit_strlen",
);

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.sigaudit_mem,\"ax\",@progbits",
    // void *memcpy(void *dst /* rdi */, const void *src /* rsi */, size_t n /* rdx */)
    ".type sigaudit_memcpy, @function",
    "sigaudit_memcpy:",
    "    mov rax, rdi",
    "    cmp rdx, 32",
    "    jae 3f",
    "    test rdx, rdx",
    "    jz 4f",
    "2:  movzx ecx, byte ptr [rsi]",
    "    mov byte ptr [rdi], cl",
    "    inc rsi",
    "    inc rdi",
    "    dec rdx",
    "    jnz 2b",
    "4:  ret",
    "3:  mov rcx, rdx",
    "    shr rcx, 3",
    "    rep movsq",
    "    mov rcx, rdx",
    "    and rcx, 7",
    "    rep movsb",
    "    ret",
    // void *memmove(void *dst, const void *src, size_t n): forwards unless dst overlaps the
    // end of src, then backwards (the direction flag is set only for that copy).
    ".type sigaudit_memmove, @function",
    "sigaudit_memmove:",
    "    cmp rdi, rsi",
    "    jbe sigaudit_memcpy",
    "    lea r8, [rsi + rdx]",
    "    cmp rdi, r8",
    "    jae sigaudit_memcpy",
    "    mov rax, rdi",
    "    mov rcx, rdx",
    "    lea rsi, [rsi + rdx - 1]",
    "    lea rdi, [rdi + rdx - 1]",
    "    std",
    "    rep movsb",
    "    cld",
    "    ret",
    // void *memset(void *dst, int c /* esi */, size_t n)
    ".type sigaudit_memset, @function",
    "sigaudit_memset:",
    "    mov r8, rdi",
    "    movzx eax, sil",
    "    movabs r9, 0x0101010101010101",
    "    imul rax, r9",
    "    mov rcx, rdx",
    "    shr rcx, 3",
    "    rep stosq",
    "    mov rcx, rdx",
    "    and rcx, 7",
    "    rep stosb",
    "    mov rax, r8",
    "    ret",
    // int memcmp(const void *a, const void *b, size_t n): the difference of the first bytes
    // that differ, as unsigned chars (bcmp needs only zero or not).
    ".type sigaudit_memcmp, @function",
    "sigaudit_memcmp:",
    "    xor eax, eax",
    "    test rdx, rdx",
    "    jz 6f",
    "5:  movzx eax, byte ptr [rdi]",
    "    movzx ecx, byte ptr [rsi]",
    "    sub eax, ecx",
    "    jnz 6f",
    "    inc rdi",
    "    inc rsi",
    "    dec rdx",
    "    jnz 5b",
    "6:  ret",
    // size_t strlen(const char *s)
    ".type sigaudit_strlen, @function",
    "sigaudit_strlen:",
    "    mov rax, rdi",
    "7:  cmp byte ptr [rax], 0",
    "    je 8f",
    "    inc rax",
    "    jmp 7b",
    "8:  sub rax, rdi",
    "    ret",
    ".popsection",
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".pushsection .text.sigaudit_mem,\"ax\",@progbits",
    // void *memcpy(void *dst /* x0 */, const void *src /* x1 */, size_t n /* x2 */)
    ".type sigaudit_memcpy, %function",
    "sigaudit_memcpy:",
    "    mov x3, x0",
    "    cbz x2, 3f",
    "2:  ldrb w4, [x1], #1",
    "    strb w4, [x3], #1",
    "    subs x2, x2, #1",
    "    b.ne 2b",
    "3:  ret",
    // void *memmove(void *dst, const void *src, size_t n)
    ".type sigaudit_memmove, %function",
    "sigaudit_memmove:",
    "    cmp x0, x1",
    "    b.ls sigaudit_memcpy",
    "    add x3, x1, x2",
    "    cmp x0, x3",
    "    b.hs sigaudit_memcpy",
    "    cbz x2, 5f",
    "4:  sub x2, x2, #1",
    "    ldrb w4, [x1, x2]",
    "    strb w4, [x0, x2]",
    "    cbnz x2, 4b",
    "5:  ret",
    // void *memset(void *dst, int c /* w1 */, size_t n)
    ".type sigaudit_memset, %function",
    "sigaudit_memset:",
    "    mov x3, x0",
    "    cbz x2, 7f",
    "6:  strb w1, [x3], #1",
    "    subs x2, x2, #1",
    "    b.ne 6b",
    "7:  ret",
    // int memcmp(const void *a, const void *b, size_t n)
    ".type sigaudit_memcmp, %function",
    "sigaudit_memcmp:",
    "    cbz x2, 9f",
    "8:  ldrb w3, [x0], #1",
    "    ldrb w4, [x1], #1",
    "    subs w3, w3, w4",
    "    b.ne 12f",
    "    subs x2, x2, #1",
    "    b.ne 8b",
    "9:  mov w0, #0",
    "    ret",
    "12: mov w0, w3",
    "    ret",
    // size_t strlen(const char *s)
    ".type sigaudit_strlen, %function",
    "sigaudit_strlen:",
    "    mov x1, x0",
    "13: ldrb w2, [x1], #1",
    "    cbnz w2, 13b",
    "    sub x0, x1, x0",
    "    sub x0, x0, #1",
    "    ret",
    ".popsection",
);

// The C names, for the library itself and the unwinder linked into it.
#[cfg(not(test))]
core::arch::global_asm!(
    ".globl memcpy, memmove, memset, memcmp, bcmp, strlen",
    ".hidden memcpy, memmove, memset, memcmp, bcmp, strlen",
    ".set memcpy, sigaudit_memcpy",
    ".set memmove, sigaudit_memmove",
    ".set memset, sigaudit_memset",
    ".set memcmp, sigaudit_memcmp",
    ".set bcmp, sigaudit_memcmp",
    ".set strlen, sigaudit_strlen",
);

#[cfg(test)]
mod tests {
    use core::ffi::{c_char, c_int, c_void};

    unsafe extern "C" {
        fn sigaudit_memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
        fn sigaudit_memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
        fn sigaudit_memset(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void;
        fn sigaudit_memcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int;
        fn sigaudit_strlen(s: *const c_char) -> usize;
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn copies_and_fills_every_size_and_offset() {
        for n in 0..300 {
            for off in 0..3 {
                let src = pattern(n + off);
                let mut dst = vec![0xaau8; n + 8];
                // SAFETY: both buffers hold n bytes from their offsets.
                let r = unsafe {
                    sigaudit_memcpy(dst[1..].as_mut_ptr().cast(), src[off..].as_ptr().cast(), n)
                };
                assert_eq!(r, dst[1..].as_mut_ptr().cast());
                assert_eq!(&dst[1..=n], &src[off..off + n], "memcpy {n} {off}");
                assert_eq!((dst[0], dst[n + 1]), (0xaa, 0xaa), "memcpy {n}: outside");
                // SAFETY: as above.
                let r = unsafe { sigaudit_memset(dst[1..].as_mut_ptr().cast(), 0x1ff, n) };
                assert_eq!(r, dst[1..].as_mut_ptr().cast());
                assert!(dst[1..=n].iter().all(|&b| b == 0xff), "memset {n}");
                assert_eq!((dst[0], dst[n + 1]), (0xaa, 0xaa), "memset {n}: outside");
            }
        }
    }

    #[test]
    fn moves_overlapping_ranges_either_way() {
        for n in 0..100 {
            for shift in 0..40usize {
                let orig = pattern(n + shift);
                for forward in [true, false] {
                    let mut buf = orig.clone();
                    let (dst, src) = if forward { (0, shift) } else { (shift, 0) };
                    let mut want = orig.clone();
                    want.copy_within(src..src + n, dst);
                    // SAFETY: both ranges lie in `buf`.
                    unsafe {
                        let p = buf.as_mut_ptr();
                        sigaudit_memmove(p.add(dst).cast(), p.add(src).cast(), n);
                    }
                    assert_eq!(buf, want, "memmove {n} bytes by {shift}, forward {forward}");
                }
            }
        }
    }

    #[test]
    fn compares_like_memcmp() {
        for n in 0..80 {
            let a = pattern(n);
            // SAFETY: n bytes each.
            let same = unsafe { sigaudit_memcmp(a.as_ptr().cast(), a.clone().as_ptr().cast(), n) };
            assert_eq!(same, 0);
            for i in 0..n {
                let mut b = a.clone();
                b[i] = b[i].wrapping_add(1);
                // SAFETY: as above.
                let r = unsafe { sigaudit_memcmp(a.as_ptr().cast(), b.as_ptr().cast(), n) };
                assert_eq!(r.signum(), (a[i] as i32 - b[i] as i32).signum(), "{n} {i}");
            }
        }
        // SAFETY: NUL-terminated strings.
        unsafe {
            assert_eq!(sigaudit_strlen(c"".as_ptr()), 0);
            assert_eq!(sigaudit_strlen(c"zPLR".as_ptr()), 4);
        }
    }
}
