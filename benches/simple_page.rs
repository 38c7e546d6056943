//! Hot functions of the page pipeline, at 32 and 4,096 files, reported as bytes/s of the
//! upstream page: parse (JSON and HTML), rewrite file URLs, render (JSON and HTML).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pipgate::pypi::ProjectName;
use pipgate::pypi::rewrite::client_page;
use pipgate::pypi::simple::{
    parse_project_html, parse_project_json, render_project_html, render_project_json,
};
use url::Url;

/// A PyPI-like JSON page with `files` wheels and sdists.
fn json_page(files: usize) -> String {
    let entries: Vec<String> = (0..files)
        .map(|i| {
            let (version, kind) = (i / 8, i % 8);
            let filename = if kind == 0 {
                format!("bench_project-1.{version}.0.tar.gz")
            } else {
                format!("bench_project-1.{version}.0-cp3{kind}-cp3{kind}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
            };
            format!(
                r#"{{"filename":"{filename}","url":"https://files.example/packages/ab/cd/{i:064x}/{filename}","hashes":{{"sha256":"{i:064x}"}},"requires-python":">=3.8","core-metadata":{{"sha256":"{i:064x}"}},"data-dist-info-metadata":{{"sha256":"{i:064x}"}},"size":{},"upload-time":"2024-01-01T00:00:00.000000Z","yanked":false}}"#,
                1000 + i
            )
        })
        .collect();
    format!(
        r#"{{"meta":{{"api-version":"1.1"}},"name":"bench-project","files":[{}],"versions":[]}}"#,
        entries.join(",")
    )
}

fn bench(c: &mut Criterion) {
    let base = Url::parse("https://upstream.example/simple/bench-project/").unwrap();
    let project = ProjectName::new("bench-project").unwrap();
    for files in [32, 4096] {
        let json = json_page(files);
        let model = parse_project_json(json.as_bytes(), &base, project.as_str()).unwrap();
        let html = render_project_html(&model);
        let client = client_page(&model, &project, None);

        let mut group = c.benchmark_group(format!("page_{files}_files"));
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_function(BenchmarkId::new("parse", "json"), |b| {
            b.iter(|| parse_project_json(black_box(json.as_bytes()), &base, project.as_str()).unwrap())
        });
        group.bench_function(BenchmarkId::new("rewrite", "urls"), |b| {
            b.iter(|| client_page(black_box(&model), &project, None))
        });
        group.bench_function(BenchmarkId::new("render", "json"), |b| {
            b.iter(|| render_project_json(black_box(&client)))
        });
        group.bench_function(BenchmarkId::new("render", "html"), |b| {
            b.iter(|| render_project_html(black_box(&client)))
        });
        group.throughput(Throughput::Bytes(html.len() as u64));
        group.bench_function(BenchmarkId::new("parse", "html"), |b| {
            b.iter(|| parse_project_html(black_box(html.as_bytes()), &base, project.as_str()).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
