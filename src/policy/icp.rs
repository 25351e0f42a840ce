//! ICP filing and public security filing numbers: checked when the config loads.
//!
//! Every site served in mainland China needs an ICP filing (`京ICP备16063439号-1`) or a commercial
//! ICP licence (`京ICP证110507号`); many also show a public security filing
//! (`京公网安备11010802044671号`).

/// One-character abbreviations of the provinces, regions and municipalities that issue filings.
const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// Example shown in error messages.
pub const ICP_EXAMPLE: &str = "京ICP备16063439号-1 or 京ICP证110507号";
/// Example shown in error messages.
pub const PUBLIC_SECURITY_EXAMPLE: &str = "京公网安备11010802044671号";

fn province_then(s: &str) -> Option<&str> {
    let mut chars = s.chars();
    let first = chars.next()?;
    PROVINCES.contains(first).then_some(chars.as_str())
}

fn digits(s: &str, min: usize, max: usize) -> Option<&str> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    (min..=max).contains(&n).then(|| &s[n..])
}

/// `京ICP备16063439号`, optionally `-N`; or a licence `京ICP证110507号`.
pub fn is_icp_number(s: &str) -> bool {
    let Some(rest) = province_then(s) else {
        return false;
    };
    if let Some(rest) = rest.strip_prefix("ICP备") {
        let Some(rest) = digits(rest, 4, 12).and_then(|r| r.strip_prefix('号')) else {
            return false;
        };
        return match rest.strip_prefix('-') {
            None => rest.is_empty(),
            Some(index) => digits(index, 1, 4) == Some(""),
        };
    }
    if let Some(rest) = rest.strip_prefix("ICP证") {
        return digits(rest, 4, 12).and_then(|r| r.strip_prefix('号')) == Some("");
    }
    false
}

/// `京公网安备11010802044671号`: province, 公网安备, 14 digits, 号.
pub fn is_public_security_number(s: &str) -> bool {
    province_then(s)
        .and_then(|r| r.strip_prefix("公网安备"))
        .and_then(|r| digits(r, 14, 14))
        == Some("号")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icp_filings_and_licences() {
        for ok in [
            "京ICP备16063439号-1",
            "京ICP备16063439号",
            "沪ICP备2023001234号-12",
            "京ICP证110507号",
        ] {
            assert!(is_icp_number(ok), "{ok}");
        }
        for bad in [
            "12345",
            "ICP备16063439号",
            "XICP备16063439号",
            "京ICP备号",
            "京ICP备16063439",
            "京ICP备16063439号-",
            "京ICP备16063439号-x",
            "京ICP证110507号-1",
            "",
        ] {
            assert!(!is_icp_number(bad), "{bad}");
        }
    }

    #[test]
    fn public_security_filings() {
        assert!(is_public_security_number("京公网安备11010802044671号"));
        assert!(!is_public_security_number("京公网安备1101080204467号"));
        assert!(!is_public_security_number("京公网安备110108020446711号"));
        assert!(!is_public_security_number("公网安备11010802044671号"));
    }
}
