//! Matrices: one file, several trials. `matrix:` names parameters and their values; every
//! combination is a trial named `name[k=v,…]`. `${var}` in the file's text is replaced before
//! the file is parsed, and a step's `when:` keeps it to some combinations.
//!
//! ```yaml
//! matrix:
//!   state: [FIN_WAIT_1, LAST_ACK]      # values as text
//!   pos:                               # values are the keys; their fields become variables
//!     rcv-nxt: {seq: 1}
//!     outside: {seq: 70000}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One parameter: its name and its values, each with the variables it brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub values: Vec<(String, BTreeMap<String, String>)>,
}

/// The parameters in the order the file gives them (that order names the trials).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix(pub Vec<Param>);

/// One combination: parameter values and every variable they define.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Combination {
    pub params: Vec<(String, String)>,
    pub vars: BTreeMap<String, String>,
}

impl Combination {
    /// `[state=LAST_ACK,pos=middle]`, or nothing without a matrix.
    pub fn suffix(&self) -> String {
        if self.params.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("[{}]", parts.join(","))
    }

    pub fn value(&self, param: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.as_str())
    }
}

impl Matrix {
    /// How many combinations the matrix stands for (1 without a matrix), without making
    /// them; saturates rather than overflows.
    pub fn count(&self) -> u128 {
        self.0
            .iter()
            .fold(1u128, |n, p| n.saturating_mul(p.values.len() as u128))
    }

    /// Every combination, the first parameter varying slowest, made one at a time as the
    /// caller asks for it (a large matrix is never built whole).
    pub fn combinations(&self) -> Combinations<'_> {
        Combinations {
            matrix: self,
            next: Some(vec![0; self.0.len()]),
        }
    }

    /// Parameter names and values become part of trial names (`name[state=LAST_ACK]`) and of
    /// capture file names: they must be short words without `/`, `,`, `=` or brackets.
    pub fn check_names(&self) -> Result<(), String> {
        for p in &self.0 {
            let name_ok = p.name.len() <= 32
                && p.name.starts_with(|c: char| c.is_ascii_lowercase())
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !name_ok {
                return Err(format!(
                    "matrix parameter `{}` must be a lowercase word (letters, digits, _ and -, at most 32)",
                    shorten(&p.name)
                ));
            }
            for (value, _) in &p.values {
                let ok = !value.is_empty()
                    && value.len() <= 64
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.:+-".contains(c));
                if !ok {
                    return Err(format!(
                        "matrix value `{}` of `{}` names trials: letters, digits and _ . : + - only, at most 64 (put other text in a variable: `name: {{var: text}}`)",
                        shorten(value),
                        p.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name == name)
    }

    fn combination(&self, at: &[usize]) -> Combination {
        let mut c = Combination::default();
        for (p, &i) in self.0.iter().zip(at) {
            let (value, vars) = &p.values[i];
            c.params.push((p.name.clone(), value.clone()));
            c.vars.insert(p.name.clone(), value.clone());
            c.vars
                .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        c
    }
}

/// At most 40 characters of a text, for a message.
fn shorten(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// The combinations of a matrix, in order, one at a time.
pub struct Combinations<'a> {
    matrix: &'a Matrix,
    /// The value index of each parameter for the next combination; None when done.
    next: Option<Vec<usize>>,
}

impl Iterator for Combinations<'_> {
    type Item = Combination;

    fn next(&mut self) -> Option<Combination> {
        let at = self.next.take()?;
        let params = &self.matrix.0;
        // A parameter without values makes no combination at all.
        if params.iter().any(|p| p.values.is_empty()) {
            return None;
        }
        let combination = self.matrix.combination(&at);
        // Odometer: the last parameter turns fastest.
        let mut following = at;
        for i in (0..params.len()).rev() {
            following[i] += 1;
            if following[i] < params[i].values.len() {
                self.next = Some(following);
                break;
            }
            following[i] = 0;
        }
        Some(combination)
    }
}

/// Where substituted values sit in the expanded text, so a position there can be given in
/// the text as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansions(Vec<Expansion>);

/// One `${name}`: its byte range in the written text and its value's in the expanded text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expansion {
    written: std::ops::Range<usize>,
    expanded: std::ops::Range<usize>,
}

impl Expansions {
    /// The byte offset in the written text of a byte offset in the expanded text: the same
    /// place, or the `${` of the reference whose value it falls in.
    pub fn written_offset(&self, expanded: usize) -> usize {
        let before = self.0.partition_point(|e| e.expanded.start <= expanded);
        match before.checked_sub(1).map(|i| &self.0[i]) {
            None => expanded,
            Some(e) if expanded < e.expanded.end => e.written.start,
            Some(e) => e.written.end + (expanded - e.expanded.end),
        }
    }
}

/// Replaces `${name}` with the combination's variables, making at most `limit` bytes of
/// text. Errors give the byte offset of the unknown or unclosed reference, or of the one
/// that goes past the limit.
pub fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    limit: usize,
) -> Result<(String, Expansions), (usize, String)> {
    substitute_with(text, vars, &BTreeSet::new(), limit)
}

/// Names a script captures from segments at run time (`win: =w`), found in its text.
pub fn captured_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(':') {
        let after = rest[i + 1..].trim_start_matches([' ', '\t']);
        if let Some(name) = after.strip_prefix('=') {
            let n: String = name
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if n.starts_with(|c: char| c.is_ascii_lowercase()) {
                out.insert(n);
            }
        }
        rest = &rest[i + 1..];
    }
    out
}

/// The value of `${name}`, or of a sum like `${name + N}`, `${rcv + w - 1}`: a variable's text
/// as it stands, or the sum's terms added up. A term is a number, a numeric variable (matrix or
/// per family), or at most one value captured at run time, added (not subtracted); with one,
/// the value is `"$name+N"` (quoted, so YAML reads it as text wherever it stands) for the step
/// to fill in, N being the rest of the sum.
fn value_of(
    reference: &str,
    vars: &BTreeMap<String, String>,
    captured: &BTreeSet<String>,
) -> Option<String> {
    if let Some(v) = vars.get(reference) {
        return Some(v.clone());
    }
    let mut sum: i64 = 0;
    let mut capture: Option<&str> = None;
    for (negative, term) in terms(reference)? {
        let n = if let Ok(n) = term.parse::<i64>() {
            n
        } else if let Some(v) = vars.get(term) {
            v.trim().parse::<i64>().ok()?
        } else if captured.contains(term) && capture.is_none() && !negative {
            capture = Some(term);
            continue;
        } else {
            return None;
        };
        // Within the sequence space, as the offsets of captured values are.
        if n.unsigned_abs() > u64::from(u32::MAX) {
            return None;
        }
        sum = if negative {
            sum.checked_sub(n)?
        } else {
            sum.checked_add(n)?
        };
    }
    Some(match capture {
        Some(name) => format!("\"${name}{sum:+}\""),
        None => sum.to_string(),
    })
}

/// The terms of `a + b - c`, each with whether it is subtracted; None for an empty term (`a +`,
/// `a + - b`). The first term may not be negative: `-1` alone is a number, not a sum.
fn terms(reference: &str) -> Option<Vec<(bool, &str)>> {
    let mut out = Vec::new();
    let mut negative = false;
    let mut rest = reference.trim();
    loop {
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let term = rest[..end].trim();
        if term.is_empty() {
            return None;
        }
        out.push((negative, term));
        if end == rest.len() {
            return Some(out);
        }
        negative = &rest[end..=end] == "-";
        rest = &rest[end + 1..];
    }
}

/// [`substitute`], leaving references to values captured at run time for the steps.
pub fn substitute_with(
    text: &str,
    vars: &BTreeMap<String, String>,
    captured: &BTreeSet<String>,
    limit: usize,
) -> Result<(String, Expansions), (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err((offset + i, "`${` is not closed; expected ${name}".into()));
        };
        let name = &after[..end];
        let value = value_of(name, vars, captured);
        match value.as_ref() {
            Some(v) if out.len() + v.len() + (text.len() - offset - i) > limit => {
                return Err((
                    offset + i,
                    format!(
                        "with the matrix's values in, the text would be more than {} MiB",
                        limit >> 20
                    ),
                ));
            }
            Some(v) => {
                map.push(Expansion {
                    written: offset + i..offset + i + 2 + end + 1,
                    expanded: out.len()..out.len() + v.len(),
                });
                out.push_str(v);
            }
            None => {
                let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "the file has no `matrix:`".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                let shown = shorten(name);
                return Err((
                    offset + i,
                    format!("unknown variable `${{{shown}}}` ({hint}; a value captured with `=name` is used as ${{name}} or in a sum like ${{name + N}})"),
                ));
            }
        }
        offset += i + 2 + end + 1;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, Expansions(map)))
}

/// Every `${…}` replaced by as many `0`s as it has characters (line breaks kept): enough to
/// read the `matrix:` key itself, at the same lines and columns as written.
pub fn blank_variables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(end) => {
                out.extend(
                    rest[i..=i + end]
                        .chars()
                        .map(|c| if c == '\n' { '\n' } else { '0' }),
                );
                rest = &rest[i + end + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A scalar as text, whatever YAML type it has.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar (text or number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A parameter's values: a list of scalars, or a map of value → variables.
struct Values(Vec<(String, BTreeMap<String, String>)>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of values, or a map of values to their variables ({seq: 1})")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
                Ok(Values(vec![(v.to_string(), BTreeMap::new())]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Values, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(v)) = seq.next_element()? {
                    out.push((v, BTreeMap::new()));
                }
                Ok(Values(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(k)) = map.next_key()? {
                    let vars: BTreeMap<String, Text> = map.next_value()?;
                    out.push((k, vars.into_iter().map(|(k, v)| (k, v.0)).collect()));
                }
                Ok(Values(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Matrix;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of parameter names to their values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Matrix, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Values(values) = map.next_value()?;
                    if values.is_empty() {
                        return Err(de::Error::custom(format!(
                            "matrix parameter `{name}` has no values"
                        )));
                    }
                    out.push(Param { name, values });
                }
                Ok(Matrix(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `when: {pos: [a, b], state: c}`: a value or a list of values per parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct When(pub Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = When;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of matrix parameters to a value or a list of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<When, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Values(values) = map.next_value()?;
                    out.push((name, values.into_iter().map(|(v, _)| v).collect()));
                }
                Ok(When(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl When {
    /// Whether a step applies, or why the condition is wrong.
    pub fn check(&self, matrix: &Matrix, c: &Combination) -> Result<bool, String> {
        let mut all = true;
        for (name, values) in &self.0 {
            let Some(param) = matrix.param(name) else {
                return Err(format!(
                    "`when:` names `{name}`, which is not a matrix parameter"
                ));
            };
            if let Some(bad) = values
                .iter()
                .find(|v| !param.values.iter().any(|(pv, _)| pv == *v))
            {
                let known: Vec<&str> = param.values.iter().map(|(v, _)| v.as_str()).collect();
                return Err(format!(
                    "`when:` value `{bad}` is not a value of `{name}` ({})",
                    known.join(", ")
                ));
            }
            all &= c.value(name).is_some_and(|v| values.iter().any(|x| x == v));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_keep_the_file_order() {
        let m: Matrix =
            serde_saphyr::from_str("state: [A, B]\npos:\n  left: {seq: 0}\n  right: {seq: 9}\n")
                .unwrap();
        assert_eq!(m.count(), 4);
        let all: Vec<Combination> = m.combinations().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].suffix(), "[state=A,pos=left]");
        assert_eq!(all[3].suffix(), "[state=B,pos=right]");
        assert_eq!(all[1].suffix(), "[state=A,pos=right]");
        assert_eq!(all[1].vars["seq"], "9");
        assert_eq!(
            substitute("seq: ${seq} ${state}", &all[1].vars, 1000)
                .unwrap()
                .0,
            "seq: 9 A"
        );
        assert!(substitute("${nope}", &all[1].vars, 1000)
            .unwrap_err()
            .1
            .contains("unknown variable"));
    }

    /// A matrix far too large to build whole still yields its first combinations at once.
    #[test]
    fn combinations_are_made_lazily() {
        let text: String = (0..40).map(|i| format!("p{i}: [a, b]\n")).collect();
        let m: Matrix = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(m.count(), 1 << 40);
        let first: Vec<Combination> = m.combinations().take(2).collect();
        assert_eq!(first[1].value("p39"), Some("b"));
        assert_eq!(first[1].value("p0"), Some("a"));
        let m: Matrix = serde_saphyr::from_str("x: [1, 2, 3]\n").unwrap();
        assert_eq!(m.combinations().count(), 3);
        assert_eq!(
            Matrix::default().combinations().count(),
            1,
            "no matrix: one scenario"
        );
    }

    /// Offsets in the expanded text lead back to the text as written.
    #[test]
    fn expansions_map_back_to_the_written_text() {
        let vars = BTreeMap::from([("x".to_string(), "aaaaaaa".to_string())]);
        let written = "a: ${x} b\nc: ${x}\n";
        let (expanded, map) = substitute(written, &vars, 1000).unwrap();
        assert!(substitute(written, &vars, 24)
            .unwrap_err()
            .1
            .contains("more than"));
        assert_eq!(expanded, "a: aaaaaaa b\nc: aaaaaaa\n");
        assert_eq!(map.written_offset(0), 0);
        assert_eq!(map.written_offset(3), 3, "the value's start is the `${{`");
        assert_eq!(map.written_offset(6), 3, "inside the value: the `${{`");
        assert_eq!(&written[map.written_offset(11)..], "b\nc: ${x}\n");
        assert_eq!(&written[map.written_offset(16)..], "${x}\n");
        assert_eq!(&written[map.written_offset(23)..], "\n");
        assert_eq!(blank_variables("a: ${x}\nb: ${\u{e9}}"), "a: 0000\nb: 0000");
    }

    /// Sums mix numbers, numeric variables and one captured value (`${w + rcv - 1}`).
    #[test]
    fn sums_of_variables_and_a_capture() {
        let vars = BTreeMap::from([
            ("rcv".to_string(), "2".to_string()),
            ("d".to_string(), "-1".to_string()),
            ("word".to_string(), "abc".to_string()),
        ]);
        let captured = BTreeSet::from(["w".to_string()]);
        let sub = |t: &str| substitute_with(t, &vars, &captured, 1000).map(|(s, _)| s);
        assert_eq!(sub("${rcv + 1460}").unwrap(), "1462");
        assert_eq!(
            sub("${rcv + d}").unwrap(),
            "1",
            "a negative variable is added as it is"
        );
        assert_eq!(sub("${rcv - d - 3}").unwrap(), "0");
        assert_eq!(sub("${w + rcv + d}").unwrap(), "\"$w+1\"");
        assert_eq!(
            sub("${rcv + w - 2}").unwrap(),
            "\"$w+0\"",
            "the capture anywhere in the sum"
        );
        assert_eq!(sub("${w}").unwrap(), "\"$w+0\"");
        assert_eq!(
            sub("${word}").unwrap(),
            "abc",
            "a text variable alone stands as it is"
        );
        // Not a sum the steps could compute: an error at the reference.
        for bad in [
            "${rcv - w}",
            "${w + w}",
            "${rcv + word}",
            "${rcv +}",
            "${- rcv}",
            "${rcv + nope}",
            "${rcv * 2}",
            "${rcv + 4294967296}",
        ] {
            assert!(sub(bad).is_err(), "{bad}");
        }
        // Without captures, the same sums of variables.
        assert_eq!(substitute("${rcv + d + 10}", &vars, 1000).unwrap().0, "11");
    }

    #[test]
    fn when_selects_and_rejects_typos() {
        let m: Matrix = serde_saphyr::from_str("rfc1337: [0, 1]\n").unwrap();
        let c = &m.combinations().nth(1).unwrap();
        let w: When = serde_saphyr::from_str("rfc1337: 1\n").unwrap();
        assert_eq!(w.check(&m, c), Ok(true));
        let w: When = serde_saphyr::from_str("rfc1337: [0]\n").unwrap();
        assert_eq!(w.check(&m, c), Ok(false));
        let w: When = serde_saphyr::from_str("rfc1337: 2\n").unwrap();
        assert!(w.check(&m, c).is_err());
    }
}
