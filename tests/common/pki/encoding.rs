//! PEM and the minimal DER writing and reading the CA needs to swap a certificate's subject
//! (rcgen cannot write some of the odd subjects the tests want).

use super::*;

/// PEM-encodes a sequence of DER certificates.
pub fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    chain.iter().map(|c| pem_encode("CERTIFICATE", c)).collect()
}

/// PEM-encodes one DER blob under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(super) fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
        out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
        if chunk.len() > 1 {
            out.push(char::from(ALPHABET[(n >> 6) as usize & 63]));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(char::from(ALPHABET[n as usize & 63]));
        } else {
            out.push('=');
        }
    }
    out
}

pub(super) fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// (header length, content length) of the DER element at the start of `buf`.
pub(super) fn read_header(buf: &[u8]) -> (usize, usize) {
    assert!(buf.len() >= 2, "truncated DER");
    let first = buf[1];
    if first < 0x80 {
        return (2, first as usize);
    }
    let n = (first & 0x7f) as usize;
    assert!(n > 0 && n <= 4 && buf.len() >= 2 + n, "unsupported DER length");
    let len = buf[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    (2 + n, len)
}

pub(super) fn encode_oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut push_arc = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        content.extend(tmp);
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for a in &arcs[2..] {
        push_arc(*a);
    }
    tlv(0x06, &content)
}

/// A Name: one RDN (SET of one AttributeTypeAndValue) per attribute, values as UTF8String.
pub(super) fn encode_name(attrs: &[(&[u64], &str)]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for (oid, value) in attrs {
        let mut atv = encode_oid(oid);
        atv.extend(tlv(0x0c, value.as_bytes()));
        rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
    }
    tlv(0x30, &rdns)
}

pub(super) fn replace_subject(cert: &[u8], placeholder: &[u8], subject: &[u8], issuer_key: &KeyPair) -> Vec<u8> {
    let (h, l) = read_header(cert);
    let content = &cert[h..h + l];
    let (th, tl) = read_header(content);
    let tbs_content = &content[th..th + tl];
    let rest = &content[th + tl..];
    let pos = tbs_content
        .windows(placeholder.len())
        .position(|w| w == placeholder)
        .expect("placeholder subject present in TBS");
    let mut new_tbs_content = tbs_content[..pos].to_vec();
    new_tbs_content.extend_from_slice(subject);
    new_tbs_content.extend_from_slice(&tbs_content[pos + placeholder.len()..]);
    let new_tbs = tlv(0x30, &new_tbs_content);
    let sig = issuer_key.sign(&new_tbs).expect("sign TBS");
    let (ah, al) = read_header(rest);
    let alg = &rest[..ah + al];
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut body = new_tbs;
    body.extend_from_slice(alg);
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}
