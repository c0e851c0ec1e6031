//! Whole-grid tests of `xgrid-povray` (issue: POV-Ray on the grid): the real controller, two
//! real agents and the agents' real POV-Ray, compared pixel for pixel with POV-Ray run
//! directly. Tests that need POV-Ray say so and skip when `/usr/bin/povray` is missing
//! (scripts/setup installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use xgrid_grid_tests::{binary, scratch_dir, Grid};
use xgrid_protocol::plist::{Dictionary, Value};

const POVRAY: &str = "/usr/bin/povray";

fn have_povray(test: &str) -> bool {
    let found = Path::new(POVRAY).exists();
    if !found {
        eprintln!("{test}: skipped, {POVRAY} is missing (scripts/setup installs it)");
    }
    found
}

fn scenes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes")
}

/// Run `xgrid-povray` against `grid` from directory `cwd`.
fn xgrid_povray(grid: &Grid, cwd: &Path, args: &[&str]) -> Output {
    Command::new(binary("xgrid-povray"))
        .arg("-h")
        .arg(&grid.address)
        .args(args)
        .current_dir(cwd)
        .env_remove("XGRID_CONTROLLER_HOSTNAME")
        .env_remove("XGRID_CONTROLLER_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run xgrid-povray")
}

/// Render with POV-Ray on this machine, as one process, into `out` (PPM).
fn direct_render(scene: &str, options: &[&str], out: &Path) {
    let output = Command::new(POVRAY)
        .args(options)
        .args(["-D", "-V", "+FP"])
        .arg(format!("+O{}", out.display()))
        .arg(format!("+I{scene}"))
        .current_dir(scenes())
        .output()
        .expect("run povray");
    assert!(
        output.status.success(),
        "direct povray failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Width, height and RGB bytes of a binary PPM, comment lines (POV-Ray writes some) skipped.
fn read_ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if bytes[at] == b'#' {
            while bytes[at] != b'\n' {
                at += 1;
            }
            continue;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P6", "{} is not a binary PPM", path.display());
    assert_eq!(fields[3], "255", "{} is not 8-bit", path.display());
    let width: usize = fields[1].parse().expect("width");
    let height: usize = fields[2].parse().expect("height");
    let pixels = bytes[at + 1..].to_vec();
    assert_eq!(
        pixels.len(),
        width * height * 3,
        "{} is truncated",
        path.display()
    );
    (width, height, pixels)
}

fn assert_same_pixels(grid_file: &Path, direct_file: &Path) {
    let (gw, gh, grid_pixels) = read_ppm(grid_file);
    let (dw, dh, direct_pixels) = read_ppm(direct_file);
    assert_eq!((gw, gh), (dw, dh), "image sizes differ");
    let differing = grid_pixels
        .chunks(3)
        .zip(direct_pixels.chunks(3))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing,
        0,
        "{differing} of {} pixels of {} differ from the direct render",
        gw * gh,
        grid_file.display()
    );
}

fn success(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "xgrid-povray failed: {stderr}");
    stderr
}

#[test]
fn tiles_rendered_on_two_agents_match_a_direct_render() {
    if !have_povray("tiles_rendered_on_two_agents_match_a_direct_render") {
        return;
    }
    let grid = Grid::start("povray-tiles", 2, 1);
    let work = scratch_dir("povray-tiles-out");
    let scene = scenes().join("still.pov");
    let scene = scene.to_str().expect("UTF-8 path");
    // Anti-aliasing and jitter on: the tiles must still join without a seam.
    let options = ["+W160", "+H120", "+A0.3", "+J0.5"];
    let mut args = vec![scene];
    args.extend(options);
    args.extend(["-tiles", "12", "-o", "grid.ppm"]);
    let stderr = success(&xgrid_povray(&grid, &work, &args));
    // 5x4 blocks of 32 pixels: about 12 tiles, as the block grid allows.
    // The tool says "job N: K tiles of 160x120".
    let count: usize = stderr
        .split_once(" tiles of 160x120")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tile count in {stderr}"));
    assert!((10..=14).contains(&count), "{count} tiles for about 12");
    assert!(
        stderr.contains(&format!("{count}/{count} tiles rendered")),
        "{stderr}"
    );

    direct_render("still.pov", &options, &work.join("direct.ppm"));
    assert_same_pixels(&work.join("grid.ppm"), &work.join("direct.ppm"));

    // The same job written as PNG: a valid file of the right size.
    args.pop();
    args.push("grid.png");
    success(&xgrid_povray(&grid, &work, &args));
    let png = std::fs::read(work.join("grid.png")).expect("the PNG was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(&png[16..24], [0, 0, 0, 160, 0, 0, 0, 120]);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn every_frame_of_an_animation_is_rendered() {
    if !have_povray("every_frame_of_an_animation_is_rendered") {
        return;
    }
    let grid = Grid::start("povray-frames", 2, 1);
    let work = scratch_dir("povray-frames-out");
    let scene = scenes().join("moving.pov");
    let scene = scene.to_str().expect("UTF-8 path");
    let options = ["+W64", "+H48", "+KFF4"];
    let mut args = vec![scene];
    args.extend(options);
    args.extend(["-o", "frame.ppm"]);
    let stderr = success(&xgrid_povray(&grid, &work, &args));
    assert!(stderr.contains(": 4 frames of 64x48"), "{stderr}");

    direct_render("moving.pov", &options, &work.join("direct.ppm"));
    let mut frames = Vec::new();
    for n in 1..=4 {
        let grid_file = work.join(format!("frame{n}.ppm"));
        assert_same_pixels(&grid_file, &work.join(format!("direct{n}.ppm")));
        frames.push(read_ppm(&grid_file).2);
    }
    for a in 0..4 {
        for b in a + 1..4 {
            assert_ne!(
                frames[a],
                frames[b],
                "frames {} and {} are the same",
                a + 1,
                b + 1
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_missing_include_stops_the_render_before_submission() {
    let grid = Grid::start("povray-missing", 1, 1);
    let work = scratch_dir("povray-missing-out");
    std::fs::write(
        work.join("scene.pov"),
        "#include \"present.inc\"\nsphere { 0, 1 }\n",
    )
    .expect("write scene");
    std::fs::write(
        work.join("present.inc"),
        "// first line\n#include \"absent.inc\"\n",
    )
    .expect("write include");
    let output = xgrid_povray(&grid, &work, &["scene.pov", "+W64", "+H48", "-o", "x.png"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(66), "{stderr}");
    assert!(
        stderr.contains("present.inc:2: #include \"absent.inc\": no such file"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was submitted"), "{stderr}");
    assert!(!work.join("x.png").exists());

    let mut query = Dictionary::new();
    query.insert("gridIdentifier".into(), Value::from(""));
    let reply = grid.request("gridJobList", query).expect("gridJobList");
    let jobs = reply
        .get("jobList")
        .and_then(Value::as_array)
        .expect("a job list");
    assert!(jobs.is_empty(), "a job was created: {jobs:?}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_scene_povray_cannot_parse_fails_with_povrays_message() {
    if !have_povray("a_scene_povray_cannot_parse_fails_with_povrays_message") {
        return;
    }
    let grid = Grid::start("povray-parse", 1, 1);
    let work = scratch_dir("povray-parse-out");
    std::fs::write(
        work.join("broken.pov"),
        "#version 3.7;\nsphere { 0, 1 pigment { colr 1 } }\n",
    )
    .expect("write scene");
    let output = xgrid_povray(
        &grid,
        &work,
        &["broken.pov", "+W32", "+H32", "-tiles", "1", "-o", "x.png"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the tile of rows 1-32, columns 1-32 failed: POV-Ray ended with status 1"),
        "{stderr}"
    );
    assert!(stderr.contains("Parse Error"), "{stderr}");
    assert!(!work.join("x.png").exists());
    let _ = std::fs::remove_dir_all(&work);
}

/// The identifiers of the default grid's jobs.
fn job_list(grid: &Grid) -> Vec<String> {
    let mut query = Dictionary::new();
    query.insert("gridIdentifier".into(), Value::from(""));
    let reply = grid.request("gridJobList", query).expect("gridJobList");
    reply
        .get("jobList")
        .and_then(Value::as_array)
        .map(|jobs| {
            jobs.iter()
                .filter_map(|j| j.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_interrupt_deletes_the_running_job() {
    if !have_povray("an_interrupt_deletes_the_running_job") {
        return;
    }
    // One slot: the job holds it while it runs, and a later job can only run once the
    // interrupted one's task has really been stopped.
    let grid = Grid::start("povray-interrupt", 1, 1);
    let work = scratch_dir("povray-interrupt-out");
    let scene = scenes().join("still.pov");
    let render = Command::new(binary("xgrid-povray"))
        .arg("-h")
        .arg(&grid.address)
        .arg(&scene)
        .args(["+W640", "+H480", "+A0.1", "-tiles", "4", "-o", "x.png"])
        .current_dir(&work)
        .env_remove("XGRID_CONTROLLER_HOSTNAME")
        .env_remove("XGRID_CONTROLLER_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xgrid-povray");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let job = loop {
        if let Some(job) = job_list(&grid).into_iter().next() {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "no job was submitted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    grid.wait_for_job(&job, 30, |attributes| {
        attributes.get("jobStatus").and_then(Value::as_str) == Some("Running")
    });
    let sent = Command::new("kill")
        .args(["-INT", &render.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "SIGINT was not delivered");
    let output = render.wait_with_output().expect("xgrid-povray ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted: job {job} was stopped and deleted")),
        "{stderr}"
    );
    assert!(!work.join("x.png").exists());
    assert!(job_list(&grid).is_empty(), "the job is still there");

    // The slot is free again: a new job runs to its end.
    let next = grid.xgrid(&["-job", "submit", "/bin/echo", "after"]);
    let next = xgrid_grid_tests::job_identifier(&next);
    grid.wait_for_job(&next, 30, |attributes| {
        attributes.get("jobStatus").and_then(Value::as_str) == Some("Finished")
    });
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn image_maps_travel_with_the_scene_and_a_missing_one_stops_it() {
    if !have_povray("image_maps_travel_with_the_scene_and_a_missing_one_stops_it") {
        return;
    }
    let grid = Grid::start("povray-image-map", 2, 1);
    let work = scratch_dir("povray-image-map-out");
    std::fs::create_dir_all(work.join("scene/maps")).expect("directories");
    // A 16x16 PNG of coloured squares, written with the same encoder the tool uses.
    let mut map = xgrid_image::Image::blank(16, 16, 3);
    for (i, pixel) in map.pixels.chunks_mut(3).enumerate() {
        let (row, column) = (i / 16, i % 16);
        pixel.copy_from_slice(&[(row * 16) as u8, (column * 16) as u8, 200]);
    }
    std::fs::write(
        work.join("scene/maps/squares.png"),
        xgrid_image::png::encode(&map),
    )
    .expect("write the image map");
    std::fs::write(
        work.join("scene/mapped.pov"),
        "#version 3.7;\n\
         global_settings { assumed_gamma 1.0 }\n\
         camera { location <0, 0, -3> look_at 0 }\n\
         light_source { <2, 4, -5> color rgb 1 }\n\
         plane { z, 0 pigment { image_map { png \"maps/squares.png\" interpolate 2 } \
         translate <-0.5, -0.5, 0> scale 2 } finish { ambient 0.4 } }\n",
    )
    .expect("write the scene");
    let options = ["+W96", "+H64"];
    let mut args = vec!["scene/mapped.pov"];
    args.extend(options);
    args.extend(["-tiles", "4", "-o", "grid.ppm"]);
    success(&xgrid_povray(&grid, &work, &args));

    let direct = Command::new(POVRAY)
        .args(options)
        .args(["-D", "-V", "+FP", "+O../direct.ppm", "+Imapped.pov"])
        .current_dir(work.join("scene"))
        .output()
        .expect("run povray");
    assert!(direct.status.success(), "direct povray failed: {direct:?}");
    assert_same_pixels(&work.join("grid.ppm"), &work.join("direct.ppm"));
    // The map shows: the picture is not one flat colour.
    let (_, _, pixels) = read_ppm(&work.join("grid.ppm"));
    let first = &pixels[..3];
    assert!(
        pixels.chunks(3).any(|p| p != first),
        "the image map is missing"
    );

    // Without the map, nothing is submitted.
    std::fs::remove_file(work.join("scene/maps/squares.png")).expect("remove the map");
    let output = xgrid_povray(&grid, &work, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(66), "{stderr}");
    assert!(
        stderr.contains("mapped.pov:5: png \"maps/squares.png\": no such file"),
        "{stderr}"
    );
    assert_eq!(job_list(&grid).len(), 1, "only the first render made a job");
    let _ = std::fs::remove_dir_all(&work);
}
