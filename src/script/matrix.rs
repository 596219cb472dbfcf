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

use std::collections::BTreeMap;
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
    /// Every combination, the first parameter varying slowest.
    pub fn combinations(&self) -> Vec<Combination> {
        let mut out = vec![Combination::default()];
        for p in &self.0 {
            let mut next = Vec::new();
            for c in &out {
                for (value, vars) in &p.values {
                    let mut c = c.clone();
                    c.params.push((p.name.clone(), value.clone()));
                    c.vars.insert(p.name.clone(), value.clone());
                    c.vars
                        .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                    next.push(c);
                }
            }
            out = next;
        }
        out
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|p| p.name == name)
    }
}

/// Replaces `${name}` with the combination's variables. Errors give the byte offset of the
/// unknown or unclosed reference.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err((offset + i, "`${` is not closed; expected ${name}".into()));
        };
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => {
                let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "the file has no `matrix:`".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err((
                    offset + i,
                    format!("unknown variable `${{{name}}}` ({hint})"),
                ));
            }
        }
        offset += i + 2 + end + 1;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every `${…}` replaced by a harmless scalar: enough to read the `matrix:` key itself.
pub fn blank_variables(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(end) => {
                out.push('0');
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
        let all = m.combinations();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].suffix(), "[state=A,pos=right]");
        assert_eq!(all[1].vars["seq"], "9");
        assert_eq!(
            substitute("seq: ${seq} ${state}", &all[1].vars).unwrap(),
            "seq: 9 A"
        );
        assert!(substitute("${nope}", &all[1].vars)
            .unwrap_err()
            .1
            .contains("unknown variable"));
    }

    #[test]
    fn when_selects_and_rejects_typos() {
        let m: Matrix = serde_saphyr::from_str("rfc1337: [0, 1]\n").unwrap();
        let c = &m.combinations()[1];
        let w: When = serde_saphyr::from_str("rfc1337: 1\n").unwrap();
        assert_eq!(w.check(&m, c), Ok(true));
        let w: When = serde_saphyr::from_str("rfc1337: [0]\n").unwrap();
        assert_eq!(w.check(&m, c), Ok(false));
        let w: When = serde_saphyr::from_str("rfc1337: 2\n").unwrap();
        assert!(w.check(&m, c).is_err());
    }
}
