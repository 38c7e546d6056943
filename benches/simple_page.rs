//! Hot functions of the page pipeline, at 32, 4,096 and 8,000 files, reported as bytes/s of the
//! upstream page: parse (JSON and HTML), rewrite file URLs, render (JSON and HTML), gzip the
//! rendered JSON at level 1 and the background's level 6, and the cold path's render written
//! straight into its level-1 gzip (`render+gzip/1 streamed`). These are the
//! pieces of a cold page (`benches/cold.sh` times the whole request). The allocator is the
//! binary's (jemalloc), since allocation is a large part of parsing.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pipgate::pypi::ProjectName;
use pipgate::pypi::rewrite::ClientView;
use pipgate::pypi::simple::{
    parse_project_html, parse_project_json, render_project_html, render_project_html_with,
    render_project_json_with,
};
use pipgate::{cold_json_gzip, gzip_page_form};
use url::Url;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A sha256 hex digest, different per `i`: real digests are random, and compress (and so
/// cost) far more than patterned ones would.
fn digest(i: usize) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(i.to_le_bytes()))
}

/// A PyPI-like JSON page with `files` wheels and sdists.
fn json_page(files: usize) -> String {
    let entries: Vec<String> = (0..files)
        .map(|i| {
            let (sha, meta) = (digest(i), digest(i + files));
            let (version, kind) = (i / 8, i % 8);
            let filename = if kind == 0 {
                format!("bench_project-1.{version}.0.tar.gz")
            } else {
                format!("bench_project-1.{version}.0-cp3{kind}-cp3{kind}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
            };
            format!(
                r#"{{"filename":"{filename}","url":"https://files.example/packages/{}/{}/{}/{filename}","hashes":{{"sha256":"{sha}"}},"requires-python":">=3.8","core-metadata":{{"sha256":"{meta}"}},"data-dist-info-metadata":{{"sha256":"{meta}"}},"size":{},"upload-time":"2024-01-01T00:00:00.000000Z","yanked":false}}"#,
                &sha[..2],
                &sha[2..4],
                &sha[4..],
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
    for files in [32, 4096, 8000] {
        let json = json_page(files);
        let model = parse_project_json(json.as_bytes(), &base, project.as_str()).unwrap();
        let html = render_project_html(&model);
        // What a client gets: file URLs pointing at pipgate, rendered through the view.
        let view = ClientView { project: &project, offer: None };

        let mut group = c.benchmark_group(format!("page_{files}_files"));
        group.throughput(Throughput::Bytes(json.len() as u64));
        // The model is dropped outside the timing, as the server drops it long after the
        // answer (when the page leaves the cache).
        group.bench_function(BenchmarkId::new("parse", "json"), |b| {
            b.iter_with_large_drop(|| {
                parse_project_json(black_box(json.as_bytes()), &base, project.as_str()).unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("render", "json"), |b| {
            b.iter(|| render_project_json_with(black_box(&model), &view))
        });
        group.bench_function(BenchmarkId::new("render", "html"), |b| {
            b.iter(|| render_project_html_with(black_box(&model), &view))
        });
        let rendered = render_project_json_with(&model, &view);
        // Level 1 as a cold answer makes it (two threads when large), level 6 as the
        // background does (one thread).
        group.bench_function(BenchmarkId::new("gzip", "1"), |b| {
            b.iter(|| gzip_page_form(black_box(&rendered), 1, true))
        });
        group.bench_function(BenchmarkId::new("gzip", "1 one thread"), |b| {
            b.iter(|| gzip_page_form(black_box(&rendered), 1, false))
        });
        // What a cold page does: the render written into the level-1 compression a few
        // dozen entries at a time (halves on two threads when large), never whole.
        let shared = std::sync::Arc::new(model.clone());
        group.bench_function(BenchmarkId::new("render+gzip", "1 streamed"), |b| {
            b.iter(|| cold_json_gzip(&project, black_box(shared.clone())))
        });
        group.bench_function(BenchmarkId::new("gzip", "6"), |b| {
            b.iter(|| gzip_page_form(black_box(&rendered), 6, false))
        });
        group.throughput(Throughput::Bytes(html.len() as u64));
        group.bench_function(BenchmarkId::new("parse", "html"), |b| {
            b.iter_with_large_drop(|| {
                parse_project_html(black_box(html.as_bytes()), &base, project.as_str()).unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
