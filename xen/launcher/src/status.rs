//! The status table the launcher prints whenever a service changes.

/// One service's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The service's name.
    pub service: String,
    /// Its current domid, if it has a domain.
    pub domid: Option<u32>,
    /// Its state (`waiting`, `running`, `backoff`, `exited`, `failed`, `stopped`).
    pub state: String,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Its memory in MiB.
    pub memory: u32,
}

/// Renders rows as an aligned table with a header.
pub fn render(rows: &[Row]) -> String {
    let header = ["SERVICE", "DOMID", "STATE", "RESTARTS", "MEMORY"].map(String::from);
    let cells: Vec<[String; 5]> = std::iter::once(header)
        .chain(rows.iter().map(|r| {
            [
                r.service.clone(),
                r.domid.map_or("-".into(), |d| d.to_string()),
                r.state.clone(),
                r.restarts.to_string(),
                format!("{} MiB", r.memory),
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| cells.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_under_a_header() {
        let rows = [
            Row {
                service: "hello".into(),
                domid: Some(12),
                state: "running".into(),
                restarts: 0,
                memory: 32,
            },
            Row {
                service: "bus".into(),
                domid: None,
                state: "failed".into(),
                restarts: 3,
                memory: 128,
            },
        ];
        let table = render(&rows);
        assert_eq!(
            table,
            "SERVICE  DOMID  STATE    RESTARTS  MEMORY\n\
             hello    12     running  0         32 MiB\n\
             bus      -      failed   3         128 MiB\n"
        );
    }
}
