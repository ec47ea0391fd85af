//! Outgoing e-mail through the outbox, against a real SMTP server over TCP (`smtp.rs`): a mail
//! exists iff the change that enqueued it committed; it is delivered with both bodies and the
//! right headers; while the server is down it waits with back-off and goes out once it is up;
//! overlapping passes send it once; without SMTP it becomes a private `.eml` file.

use entities::outbox;
use portcullis::clock::Clock as _;
use portcullis::config::RawSettings;
use portcullis::duties::Duties;
use portcullis::mail::{Mail, MailError, MailTemplate};
use sea_orm::{EntityTrait, PaginatorTrait, TransactionTrait};

use super::helpers::*;
use super::smtp::{SmtpServer, closed_port, header, parts};

/// The app's own duty loop stays out of the way (its first pass comes after five minutes):
/// these tests run the passes themselves.
fn quiet_duties(raw: &mut RawSettings) {
    raw.key_reload_interval = portcullis::config::DurationSetting::Text("5m".into());
}

async fn app_with_smtp(url: String) -> TestApp {
    spawn_app_with(move |raw| {
        quiet_duties(raw);
        raw.smtp_url = Some(url);
    })
    .await
}

/// A reset link as the use cases build it: long (so the body is encoded) and with a `&`.
fn link(app: &TestApp) -> String {
    format!(
        "{}/ui/reset-password?token=Zm9vYmFyYmF6cXV4LXF1dXgtY29yZ2UtZ3JhdWx0LWdhcnBseQ&lang=en",
        app.base
    )
}

fn reset_mail(app: &TestApp, to: &str) -> Mail {
    Mail {
        to: to.into(),
        username: "alice".into(),
        template: MailTemplate::PasswordReset { link: link(app) },
    }
}

async fn enqueue_committed(app: &TestApp, mail: &Mail) {
    let txn = app.state.db.begin().await.unwrap();
    app.state.outbox.enqueue(&txn, mail).await.unwrap();
    txn.commit().await.unwrap();
}

async fn rows(app: &TestApp) -> Vec<outbox::Model> {
    outbox::Entity::find().all(&app.state.db).await.unwrap()
}

async fn pass(app: &TestApp) -> portcullis::mail::SendReport {
    let report = Duties::new(app.state.clone()).tick().await;
    report
        .mail
        .expect("the only instance holds the lease and sends")
}

#[tokio::test]
async fn a_committed_change_sends_its_mail_with_both_bodies_and_the_right_headers() {
    let smtp = SmtpServer::start();
    let app = app_with_smtp(smtp.url()).await;
    enqueue_committed(&app, &reset_mail(&app, "alice@example.com")).await;

    let report = pass(&app).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let got = smtp.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let message = &got[0];
    assert_eq!(message.from, "no-reply@localhost");
    assert_eq!(message.to, ["alice@example.com"]);
    let data = &message.data;
    assert_eq!(
        header(data, "From").unwrap(),
        "Portcullis <no-reply@localhost>"
    );
    assert_eq!(header(data, "To").unwrap(), "alice@example.com");
    assert_eq!(
        header(data, "Subject").unwrap(),
        "Reset your Portcullis password"
    );
    let row = &rows(&app).await[0];
    assert!(
        header(data, "Message-ID").unwrap().contains(&row.id),
        "the Message-ID names the outbox row, the same on every attempt"
    );
    assert!(
        header(data, "Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{data}"
    );
    let parts = parts(data);
    assert_eq!(parts.len(), 2, "{data}");
    let (text_type, text) = &parts[0];
    let (html_type, html) = &parts[1];
    assert!(text_type.starts_with("text/plain"), "{text_type}");
    assert!(html_type.starts_with("text/html"), "{html_type}");
    assert!(text.contains("Hello alice,"), "{text}");
    assert!(
        text.contains(&link(&app)),
        "the link intact in the text: {text}"
    );
    let escaped = link(&app).replace('&', "&#38;");
    assert!(html.contains(&format!("href=\"{escaped}\"")), "{html}");
    assert_eq!(
        html.matches(&escaped).count(),
        2,
        "a button and the link as text"
    );

    assert!(row.sent_at.is_some());
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error, None);
    // Nothing left to send: the next pass sends nothing again.
    assert_eq!(pass(&app).await.sent, 0);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn a_rolled_back_change_sends_nothing() {
    let smtp = SmtpServer::start();
    let app = app_with_smtp(smtp.url()).await;
    let txn = app.state.db.begin().await.unwrap();
    app.state
        .outbox
        .enqueue(&txn, &reset_mail(&app, "alice@example.com"))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    // Dropped without a commit: the same.
    let txn = app.state.db.begin().await.unwrap();
    app.state
        .outbox
        .enqueue(&txn, &reset_mail(&app, "bob@example.com"))
        .await
        .unwrap();
    drop(txn);

    assert_eq!(pass(&app).await, Default::default());
    assert!(rows(&app).await.is_empty());
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn mail_waits_while_the_smtp_server_is_down_and_goes_out_after_the_back_off() {
    let port = closed_port();
    let app = app_with_smtp(format!("smtp://127.0.0.1:{port}")).await;
    enqueue_committed(&app, &reset_mail(&app, "alice@example.com")).await;

    let report = pass(&app).await;
    assert_eq!((report.sent, report.deferred), (0, 1), "{report:?}");
    let row = &rows(&app).await[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(row.sent_at, None);
    assert_eq!(row.failed_at, None);
    assert_eq!(
        row.next_attempt_at,
        app.clock.now() + 30,
        "first retry after 30 s"
    );
    let error = row.last_error.as_deref().expect("the reason is recorded");
    assert!(!error.contains("token="), "{error}");

    let smtp = SmtpServer::start_on(port);
    // Up, but the message is not due yet.
    assert_eq!(pass(&app).await.sent, 0);
    assert!(smtp.received().is_empty());

    app.clock.advance(31);
    assert_eq!(pass(&app).await.sent, 1);
    let got = smtp.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["alice@example.com"]);
    let row = &rows(&app).await[0];
    assert_eq!(row.attempts, 2);
    assert!(row.sent_at.is_some());
    assert_eq!(row.last_error, None);
}

#[tokio::test]
async fn retries_back_off_and_end_after_a_day() {
    let app = app_with_smtp(format!("smtp://127.0.0.1:{}", closed_port())).await;
    enqueue_committed(&app, &reset_mail(&app, "alice@example.com")).await;
    let mut waits = Vec::new();
    for _ in 0..4 {
        assert_eq!(pass(&app).await.deferred, 1);
        let row = &rows(&app).await[0];
        let wait = row.next_attempt_at - app.clock.now();
        waits.push(wait);
        app.clock.advance(wait);
    }
    assert_eq!(waits, [30, 60, 120, 240]);
    app.clock.advance(86_400);
    let report = pass(&app).await;
    assert_eq!((report.deferred, report.failed), (0, 1), "{report:?}");
    let row = &rows(&app).await[0];
    assert!(row.failed_at.is_some());
    assert_eq!(row.attempts, 5);
    // Given up: never tried again.
    app.clock.advance(86_400);
    assert_eq!(pass(&app).await, Default::default());
}

#[tokio::test]
async fn overlapping_passes_send_each_message_once() {
    let smtp = SmtpServer::start();
    let app = app_with_smtp(smtp.url()).await;
    for i in 0..6 {
        enqueue_committed(&app, &reset_mail(&app, &format!("user{i}@example.com"))).await;
    }
    // Two senders at once (a slow pass overlapping the next, or a holder that lost the lease
    // still sending): each message is claimed by one of them.
    let (a, b) = (app.state.mail_sender.clone(), app.state.mail_sender.clone());
    let (a, b) = tokio::join!(a.send_due(), b.send_due());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sent + b.sent, 6, "{a:?} {b:?}");
    let got = smtp.wait_for(6).await;
    let mut to: Vec<String> = got.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    let expected: Vec<String> = (0..6).map(|i| format!("user{i}@example.com")).collect();
    assert_eq!(to, expected, "each message exactly once");
}

#[tokio::test]
async fn without_smtp_messages_are_written_as_private_eml_files() {
    let app = spawn_app_with(quiet_duties).await;
    enqueue_committed(&app, &reset_mail(&app, "alice@example.com")).await;
    assert_eq!(pass(&app).await.sent, 1);

    let row = &rows(&app).await[0];
    assert!(row.sent_at.is_some());
    let dir = app.dir.join("mail");
    let path = dir.join(format!("{}.eml", row.id));
    let text = dir.join(format!("{}.txt", row.id));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [path.clone(), text.clone()],
        "the message and its plain text, whole, nothing partial left"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&text), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    // The plain text reads as written: the link whole, on one line.
    assert!(
        std::fs::read_to_string(&text)
            .unwrap()
            .contains(&link(&app))
    );
    let data = std::fs::read_to_string(&path).unwrap();
    assert_eq!(header(&data, "To").unwrap(), "alice@example.com");
    assert_eq!(
        header(&data, "Subject").unwrap(),
        "Reset your Portcullis password"
    );
    let parts = parts(&data);
    assert_eq!(parts.len(), 2);
    assert!(parts[0].0.starts_with("text/plain") && parts[0].1.contains(&link(&app)));
    assert!(parts[1].0.starts_with("text/html") && parts[1].1.contains("<a href="));
}

#[tokio::test]
async fn enqueue_refuses_bad_addresses_and_links_and_writes_nothing() {
    let app = spawn_app_with(quiet_duties).await;
    for to in [
        "",
        "not-an-address",
        "alice@example.com\r\nBcc: eve@evil.example",
        "alice@example.com, eve@evil.example",
        "Alice <alice@example.com>",
    ] {
        let err = app
            .state
            .outbox
            .enqueue_alone(&reset_mail(&app, to))
            .await
            .unwrap_err();
        assert!(matches!(err, MailError::InvalidAddress), "{to:?}: {err}");
    }
    for bad in ["javascript:alert(1)", "/ui/reset?token=x"] {
        let mail = Mail {
            to: "alice@example.com".into(),
            username: "alice".into(),
            template: MailTemplate::VerifyEmail { link: bad.into() },
        };
        let err = app.state.outbox.enqueue_alone(&mail).await.unwrap_err();
        assert!(matches!(err, MailError::InvalidLink), "{bad}: {err}");
    }
    assert_eq!(
        outbox::Entity::find().count(&app.state.db).await.unwrap(),
        0
    );
}
