//! The configs that ship in `configs/`: each loads and validates, and every
//! row of every table names one whose model offers the row's head.

use std::path::Path;

use eqae::config::{Config, DatasetKind};
use eqae::eval::features::Head;
use eqae::experiment::PaperTable;

fn configs_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config =
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                Some(config.name.as_str()),
                path.file_stem().and_then(|s| s.to_str()),
                "{}: name and file differ",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 17, "only {n} configs");
}

#[test]
fn every_table_row_reads_a_head_its_config_offers() {
    for (number, dataset) in [
        (1, DatasetKind::Mnist),
        (2, DatasetKind::Plankton),
        (3, DatasetKind::FashionMnist),
    ] {
        let table = PaperTable::from_number(number).unwrap();
        for row in table.rows() {
            let path = configs_dir().join(format!("{}.toml", row.config));
            let config =
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert_eq!(
                config.data.dataset, dataset,
                "table {number}: {}",
                row.config
            );
            assert!(
                Head::defaults(config.model.kind).contains(&row.head),
                "table {number}: {} has no {:?} head",
                row.config,
                row.head
            );
            let group = row.group.map(|g| g.name());
            if let Some(g) = group {
                assert_eq!(
                    config.model.group.name(),
                    g,
                    "table {number}: {}",
                    row.config
                );
            }
        }
    }
}
