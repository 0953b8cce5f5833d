//! What docker-compose.yml, .env.example and the Dockerfile promise, checked on the files
//! themselves: the services of the stack, their start order and health checks, the settings
//! every engine component needs, and that no secret is written in the compose file.

use std::process::Command;

use commerce_contracts::topics::{AGGREGATE_TOPICS, ANALYTICS_TOPICS};
use commerce_deploy_tests::{
    Compose, env_file_variables, interpolated_variables, load_compose, read_root_file,
    workspace_root,
};

/// The engine's long-running components and the subcommand each runs.
const COMPONENTS: [(&str, &str); 4] = [
    ("api", "serve"),
    ("relay", "relay"),
    ("projections", "project"),
    ("workflows", "workflows"),
];
/// Every setting each engine component (and the migration job) must receive.
const ENGINE_SETTINGS: [&str; 6] = [
    "DATABASE_URL",
    "KAFKA_BROKERS",
    "COMMERCE_JWT_SECRET",
    "COMMERCE_AUDIT_KEY",
    "COMMERCE_EVENT_STORE",
    "RUST_LOG",
];

fn compose() -> Compose {
    load_compose().expect("docker-compose.yml parses")
}

#[test]
fn the_stack_has_the_infrastructure_and_every_engine_component() {
    let compose = compose();
    for service in [
        "postgres",
        "redpanda",
        "redpanda-init",
        "kurrentdb",
        "migrate",
        "api",
        "relay",
        "relay-kurrentdb",
        "projections",
        "workflows",
    ] {
        assert!(
            compose.services.contains_key(service),
            "service {service} is missing"
        );
    }
}

#[test]
fn infrastructure_services_have_health_checks_and_volumes() {
    let compose = compose();
    for (service, probe) in [
        ("postgres", "pg_isready"),
        ("redpanda", "rpk cluster health"),
        ("kurrentdb", "/health/live"),
    ] {
        let definition = &compose.services[service];
        let check = definition
            .healthcheck
            .as_ref()
            .unwrap_or_else(|| panic!("{service} has no health check"));
        assert!(
            check.test.join(" ").contains(probe),
            "{service}'s health check should use {probe}: {:?}",
            check.test
        );
        assert!(
            !definition.volumes.is_empty(),
            "{service} keeps no data volume"
        );
    }
    for service in compose.services.values() {
        for volume in &service.volumes {
            let name = volume.split(':').next().unwrap_or_default();
            assert!(
                compose.volumes.contains_key(name),
                "volume {name} is used but not declared"
            );
        }
    }
}

#[test]
fn components_start_after_the_migration_and_the_topics() {
    let compose = compose();
    let condition = |service: &str, on: &str| {
        compose.services[service]
            .depends_on
            .get(on)
            .map(|dependency| dependency.condition.clone())
            .unwrap_or_else(|| panic!("{service} does not depend on {on}"))
    };
    assert_eq!(condition("migrate", "postgres"), "service_healthy");
    assert_eq!(condition("redpanda-init", "redpanda"), "service_healthy");
    for (component, _) in COMPONENTS {
        assert_eq!(
            condition(component, "migrate"),
            "service_completed_successfully"
        );
        assert_eq!(
            condition(component, "redpanda-init"),
            "service_completed_successfully"
        );
    }
    for (name, service) in &compose.services {
        for (on, dependency) in &service.depends_on {
            let target = compose
                .services
                .get(on)
                .unwrap_or_else(|| panic!("{name} depends on unknown service {on}"));
            if dependency.condition == "service_healthy" {
                assert!(
                    target.healthcheck.is_some(),
                    "{name} waits for {on} to be healthy, but {on} has no health check"
                );
            }
        }
    }
}

#[test]
fn every_component_runs_the_engine_image_with_its_subcommand_and_settings() {
    let compose = compose();
    let image = compose.services["api"].image.clone();
    for (component, subcommand) in COMPONENTS.into_iter().chain([("migrate", "migrate")]) {
        let service = &compose.services[component];
        assert_eq!(service.image, image, "{component} runs another image");
        let build = service
            .build
            .as_ref()
            .unwrap_or_else(|| panic!("{component} is not built from the Dockerfile"));
        assert_eq!(build.context, ".");
        assert_eq!(service.command_line(), subcommand, "{component}'s command");
        for setting in ENGINE_SETTINGS {
            assert!(
                service.env(setting).is_some(),
                "{component} does not receive {setting}"
            );
        }
        let database = service.env("DATABASE_URL").unwrap_or_default();
        assert!(
            database.starts_with("postgres://") && database.contains("@postgres:5432/"),
            "{component}'s DATABASE_URL must name the postgres service: {database}"
        );
        assert_eq!(
            service.env("KAFKA_BROKERS").as_deref(),
            Some("redpanda:9092")
        );
    }
    let api = &compose.services["api"];
    assert_eq!(
        api.env("COMMERCE_HTTP_ADDR").as_deref(),
        Some("0.0.0.0:8080"),
        "the API must listen on all interfaces inside its container"
    );
    assert!(api.healthcheck.is_some(), "the API has no health check");
}

#[test]
fn the_command_path_stays_on_postgres_and_an_opt_in_relay_publishes_kurrentdb() {
    let compose = compose();
    for (component, _) in COMPONENTS.into_iter().chain([("migrate", "migrate")]) {
        assert_eq!(
            compose.services[component]
                .env("COMMERCE_EVENT_STORE")
                .as_deref(),
            Some("postgres"),
            "{component} runs on PostgreSQL (the command path refuses KurrentDB at start)"
        );
    }
    let relay = &compose.services["relay-kurrentdb"];
    assert_eq!(relay.command_line(), "relay");
    assert_eq!(relay.image, compose.services["relay"].image);
    assert_eq!(
        relay.profiles,
        ["kurrentdb"],
        "opt-in: needs a kurrentdb build"
    );
    let store = relay.env("COMMERCE_EVENT_STORE").unwrap_or_default();
    assert!(
        store.starts_with("${COMMERCE_KURRENTDB_URL:-kurrentdb://kurrentdb:2113"),
        "relay-kurrentdb reads the kurrentdb service: {store}"
    );
    for setting in ENGINE_SETTINGS {
        assert!(
            relay.env(setting).is_some(),
            "relay-kurrentdb does not receive {setting}"
        );
    }
    for (on, condition) in [
        ("kurrentdb", "service_healthy"),
        ("migrate", "service_completed_successfully"),
        ("redpanda-init", "service_completed_successfully"),
    ] {
        assert_eq!(
            relay.depends_on.get(on).map(|d| d.condition.as_str()),
            Some(condition),
            "relay-kurrentdb waits for {on}"
        );
    }
    assert!(relay.ports.is_empty() && relay.container_name.is_none());
}

#[test]
fn workers_can_be_scaled() {
    let compose = compose();
    for worker in ["relay", "projections", "workflows"] {
        let service = &compose.services[worker];
        assert!(
            service.container_name.is_none(),
            "{worker} has a fixed container name, so it cannot be scaled"
        );
        assert!(
            service.ports.is_empty(),
            "{worker} publishes a host port, so a second replica would clash"
        );
    }
}

#[test]
fn the_topic_job_creates_every_aggregate_and_analyst_topic() {
    let compose = compose();
    let job = compose.services["redpanda-init"].command_line();
    for topic in AGGREGATE_TOPICS.iter().chain(&ANALYTICS_TOPICS) {
        assert!(
            job.split(|c: char| c.is_whitespace() || c == ';')
                .any(|word| word == *topic),
            "redpanda-init does not create {topic}"
        );
    }
    assert!(
        job.contains("cleanup.policy=compact"),
        "analytics.orders is compacted"
    );
}

#[test]
fn no_secret_is_written_in_the_compose_file() {
    let compose = compose();
    let secret_like = |name: &str| {
        ["SECRET", "PASSWORD", "KEY"]
            .iter()
            .any(|s| name.contains(s))
    };
    for (name, service) in &compose.services {
        for variable in service.environment.keys().filter(|v| secret_like(v)) {
            let value = service.env(variable).unwrap_or_default();
            assert!(
                value.starts_with("${") && value.ends_with('}'),
                "{name}.{variable} must come from .env, not be written in the file"
            );
        }
        if let Some(url) = service.env("DATABASE_URL") {
            assert!(
                url.contains(":${POSTGRES_PASSWORD}@"),
                "{name}'s DATABASE_URL must take its password from .env"
            );
        }
    }
}

#[test]
fn env_example_defines_every_variable_the_compose_file_uses() {
    let text = read_root_file("docker-compose.yml").expect("compose file");
    let used = interpolated_variables(&text);
    let defined = env_file_variables(&read_root_file(".env.example").expect(".env.example"));
    for variable in &used {
        assert!(
            defined.contains_key(variable),
            ".env.example does not define {variable}"
        );
    }
    for variable in defined.keys() {
        assert!(
            used.contains(variable) || variable.starts_with("COMPOSE_"),
            ".env.example defines {variable}, which the compose file never uses"
        );
    }
    let gitignore = read_root_file(".gitignore").expect(".gitignore");
    assert!(
        gitignore
            .lines()
            .any(|line| line.trim() == "/.env" || line.trim() == ".env"),
        "the real .env must be git-ignored"
    );
}

#[test]
fn the_dockerfile_builds_the_binary_in_one_stage_and_runs_it_on_a_slim_image() {
    let dockerfile = read_root_file("Dockerfile").expect("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "the Dockerfile must be multi-stage");
    assert!(
        stages
            .last()
            .is_some_and(|stage| stage.contains("debian:bookworm-slim")),
        "the runtime stage must be debian:bookworm-slim: {stages:?}"
    );
    assert!(dockerfile.contains("cargo build --release"));
    assert!(dockerfile.contains("--bin commerce"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/commerce\"]"));
}

/// `docker compose config` (or the older `docker-compose config`) validates the file when a
/// compose client is installed; it needs no docker engine. Skipped, and said so, otherwise.
#[test]
fn a_compose_client_accepts_the_file_when_one_is_installed() {
    let root = workspace_root();
    let args = ["config", "--quiet"];
    let clients: [(&str, &[&str]); 2] = [("docker", &["compose"]), ("docker-compose", &[])];
    for (program, prefix) in clients {
        let available = Command::new(program)
            .args(prefix)
            .arg("version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !available {
            continue;
        }
        let output = Command::new(program)
            .args(prefix)
            .args(["--env-file", ".env.example", "-f", "docker-compose.yml"])
            .args(args)
            .current_dir(&root)
            .output()
            .expect("run the compose client");
        assert!(
            output.status.success(),
            "{program} {} config refused docker-compose.yml: {}",
            prefix.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    println!("skipped: no compose client (docker compose / docker-compose) installed");
}
