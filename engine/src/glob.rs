//! Redis glob-style pattern matching (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`.

/// Longest pattern accepted; a longer one never matches.
pub const GLOB_PATTERN_LEN_MAX: usize = 4096;

/// Whether `text` matches the glob `pattern`. Linear backtracking to the last `*` only, so
/// time is O(pattern x text) whatever the pattern.
pub fn glob_match(p: &[u8], t: &[u8]) -> bool {
    if p.len() > GLOB_PATTERN_LEN_MAX {
        return false;
    }
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            pi += 1;
            star = Some((pi, ti));
            continue;
        }
        if pi < p.len() {
            let (hit, next) = token(p, pi, t[ti]);
            if hit {
                pi = next;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Matches the single-character token at `p[pi]` (not `*`) against `ch`; returns whether it
/// matched and where the next token starts.
fn token(p: &[u8], pi: usize, ch: u8) -> (bool, usize) {
    match p[pi] {
        b'?' => (true, pi + 1),
        b'\\' if pi + 1 < p.len() => (p[pi + 1] == ch, pi + 2),
        b'[' => {
            let mut i = pi + 1;
            let negate = p.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    i += 1;
                    hit |= p[i] == ch;
                } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                    let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
                    hit |= (lo..=hi).contains(&ch);
                    i += 2;
                } else {
                    hit |= p[i] == ch;
                }
                i += 1;
            }
            (hit != negate, (i + 1).min(p.len()))
        }
        c => (c == ch, pi + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn redis_glob_cases() {
        let yes = [
            ("*", "anything"),
            ("user:*", "user:1"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("\\*", "*"),
            ("*:*", "a:b"),
            ("", ""),
            ("a*", "a"),
        ];
        let no = [
            ("user:*", "session:1"),
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("\\*", "a"),
            ("", "a"),
            ("a", ""),
        ];
        // Pathological for naive recursion; linear here.
        let text = "a".repeat(200);
        let pattern = "a*".repeat(60) + "b";
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
        for (p, t) in yes {
            assert!(glob_match(p.as_bytes(), t.as_bytes()), "{p} should match {t}");
        }
        for (p, t) in no {
            assert!(!glob_match(p.as_bytes(), t.as_bytes()), "{p} should not match {t}");
        }
    }
}
