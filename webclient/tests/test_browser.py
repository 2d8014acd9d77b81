"""
The web client in Chromium against a live server (webclient/tests/conftest.py): people chat both
ways with live delivery, typing and read markers; history scrolls back; a third person is added
and sees the history; a reload and a server restart lose and duplicate nothing; a removed member's
view stops updating; axe-core finds no serious or critical violation, on a desktop and a phone screen.
Attachments go both ways as thumbnails and downloads, fetched with the JWT, and nobody outside the
conversation can fetch them; presence dots follow a person's page opening and closing, and hiding.
"""
import base64
import io
import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from chats.tests.integration import servers
from webclient.tests.conftest import register

pytestmark = pytest.mark.browser

expect.set_options(timeout=15_000)
SCREENSHOT = servers.ROOT / "docs" / "webclient.png"


class Watched:
    """A page whose uncaught errors and CSP violations fail the test."""

    def __init__(self, context, name):
        self.name = name
        self.page = context.new_page()
        self.problems = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"{name}: uncaught {exc}"))
        self.page.on("console", self._console)
        self.page.on("dialog", lambda dialog: dialog.accept())

    def _console(self, msg):
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            self.problems.append(f"{self.name}: {msg.text}")


def open_client(context, server, name):
    watched = Watched(context, name)
    watched.page.goto(server.base_url + "/app/")
    expect(watched.page.locator("#login-form")).to_be_visible()
    return watched


def log_in(watched, person):
    page = watched.page
    page.fill("#login-email", person.email)
    page.fill("#login-password", person.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#connection")).to_have_text("Live")


def messages(page):
    return page.locator("#message-list > li")


def message(page, text):
    """The messages whose body is exactly `text` (not those quoting it)."""
    return messages(page).filter(has=page.locator(".body", has_text=re.compile(f"^{re.escape(text)}$")))


def inbox_item(page, text):
    return page.locator("#conversation-list button").filter(has_text=text)


def send(page, text):
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def unread_of(server, person, conversation_id):
    _, body = servers.api(server, "GET", f"/api/conversations/{conversation_id}/", token=person.token, expect=200)
    return body["unread_count"]


def api_send(server, person, conversation_id, text):
    servers.api(server, "POST", f"/api/conversations/{conversation_id}/messages/",
                {"message_body": text}, token=person.token, expect=201)


def serious_violations(page):
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"] if v["impact"] in ("serious", "critical")
    ]


def test_three_people_chat_live_through_reload_restart_and_removal(webclient_server, browser):
    started = time.monotonic()
    bob = register(webclient_server, "Bob", "Baker")
    carol = register(webclient_server, "Carol", "Cooper")
    contexts = [browser.new_context(viewport={"width": 1100, "height": 720}) for _ in range(3)]
    alice_w, bob_w, carol_w = (open_client(c, webclient_server, n) for c, n in zip(contexts, ("alice", "bob", "carol")))
    alice, bob_page, carol_page = alice_w.page, bob_w.page, carol_w.page

    # Alice registers in the client itself, and is logged in by it.
    alice.fill("#register-first", "Alice")
    alice.fill("#register-last", "Archer")
    alice_email = f"alice.{int(time.time() * 1000)}@example.com"
    alice.fill("#register-email", alice_email)
    alice.fill("#register-password", servers.PASSWORD)
    alice.get_by_role("button", name="Create account").click()
    expect(alice.locator("#connection")).to_have_text("Live")
    expect(alice.locator("#me-name")).to_have_text("Alice Archer")
    _, tokens = servers.api(webclient_server, "POST", "/api/token/",
                            {"email": alice_email, "password": servers.PASSWORD}, expect=200)
    alice_api = type(bob)("Alice", alice_email, "", tokens["access"])
    log_in(bob_w, bob)

    # Alice finds Bob by name and starts a conversation with a first message.
    alice.get_by_role("button", name="New conversation").click()
    alice.fill("#new-search", "Bob")
    alice.press("#new-search", "Enter")  # keeps the dialog open
    alice.get_by_role("button", name="Add Bob Baker").click()
    expect(alice.locator("#new-selected")).to_have_text("Bob Baker")
    alice.fill("#new-message", "Hi Bob!")
    alice.get_by_role("button", name="Start conversation").click()
    expect(alice.locator("#conversation-title")).to_have_text("Bob Baker")
    expect(message(alice, "Hi Bob!")).to_have_count(1)
    conversation_id = alice.evaluate("sessionStorage.getItem('webclient.current')")

    # Bob's inbox shows it live, with an unread badge and the preview; then history piles up.
    expect(inbox_item(bob_page, "Alice Archer")).to_contain_text("Alice: Hi Bob!")
    expect(inbox_item(bob_page, "Alice Archer").locator(".badge")).to_have_text("1 unread")
    for n in range(1, 41):
        api_send(webclient_server, alice_api, conversation_id, f"old {n}")
    expect(inbox_item(bob_page, "Alice Archer").locator(".badge")).to_have_text("41 unread")
    expect(inbox_item(bob_page, "Alice Archer")).to_contain_text("Alice: old 40")
    assert unread_of(webclient_server, bob, conversation_id) == 41

    # Bob opens it: the newest page, his read marker moves, the badge goes; scrolling back loads the rest.
    inbox_item(bob_page, "Alice Archer").click()
    expect(message(bob_page, "old 40")).to_have_count(1)
    expect(message(bob_page, "Hi Bob!")).to_have_count(0)
    expect(inbox_item(bob_page, "Alice Archer").locator(".badge")).to_have_count(0)
    deadline = time.monotonic() + 10
    while unread_of(webclient_server, bob, conversation_id) != 0:
        assert time.monotonic() < deadline, "Bob's read marker did not move"
        time.sleep(0.2)
    bob_page.locator("#timeline").evaluate("t => { t.scrollTop = 0; }")
    expect(message(bob_page, "Hi Bob!")).to_have_count(1)
    expect(messages(bob_page)).to_have_count(41)
    expect(bob_page.locator("#load-older")).to_be_hidden()

    # Typing, and replies both ways, live.
    bob_page.locator("#composer-input").press_sequentially("Hel")
    expect(alice.locator("#typing")).to_have_text("Bob Baker is typing…")
    send(bob_page, "Hello Alice")
    expect(message(alice, "Hello Alice")).to_have_count(1)
    expect(alice.locator("#typing")).to_have_text("")
    expect(message(bob_page, "Hello Alice")).to_have_count(1)
    expect(message(bob_page, "Hello Alice").locator(".pending")).to_have_count(0)

    # Alice edits, replies and deletes; Bob sees each live.
    message(alice, "old 40").get_by_role("button", name=re.compile("^Edit")).click()
    expect(alice.locator("#composer-context")).to_contain_text("Editing")
    send(alice, "old forty")
    expect(message(bob_page, "old forty")).to_contain_text("(edited)")
    message(alice, "Hello Alice").get_by_role("button", name=re.compile("^Reply")).click()
    expect(alice.locator("#composer-context")).to_contain_text("Replying to Bob Baker: Hello Alice")
    send(alice, "Reply here")
    expect(message(bob_page, "Reply here").locator(".quote")).to_have_text("Reply to Bob Baker: Hello Alice")
    message(alice, "old 39").get_by_role("button", name=re.compile("^Delete")).click()
    expect(message(bob_page, "This message was deleted.")).to_have_count(1)
    expect(message(bob_page, "old 39")).to_have_count(0)

    # Carol is added by Alice: the conversation appears in her inbox live, with its history.
    log_in(carol_w, carol)
    alice.get_by_role("button", name="Members").click()
    alice.fill("#members-search", "Carol")
    alice.get_by_role("button", name="Add Carol Cooper").click()
    expect(alice.locator("#members-list")).to_contain_text("Carol Cooper")
    alice.get_by_role("button", name="Close").click()
    expect(alice.locator("#conversation-title")).to_have_text("Bob Baker, Carol Cooper")
    inbox_item(carol_page, "Alice Archer").click()
    expect(message(carol_page, "Reply here")).to_have_count(1)
    expect(message(carol_page, "Hello Alice")).to_have_count(1)
    send(carol_page, "Hi both")
    expect(message(alice, "Hi both")).to_have_count(1)
    expect(message(bob_page, "Hi both")).to_have_count(1)

    # Bob reloads: everything is still there, once.
    bob_page.reload()
    expect(bob_page.locator("#connection")).to_have_text("Live")
    expect(bob_page.locator("#conversation-title")).to_have_text("Alice Archer, Carol Cooper")
    for text in ("Hi both", "Reply here", "Hello Alice", "old forty"):
        expect(message(bob_page, text)).to_have_count(1)

    # The server restarts while Alice sends: her message waits, goes out once on reconnect; Carol's
    # message sent while Bob's socket is still down reaches him by resume.
    expect(alice.locator("#conversation-presence")).to_have_text("2 online")
    webclient_server.stop()
    expect(alice.locator("#connection")).not_to_have_text("Live")
    expect(alice.locator("#conversation-presence")).to_have_text("")  # no stale presence while offline
    send(alice, "Sent while the server was down")
    expect(message(alice, "Sent while the server was down").locator(".pending")).to_have_text("Sending…")
    webclient_server.start()
    api_send(webclient_server, carol, conversation_id, "Carol after restart")
    for page in (alice, bob_page, carol_page):
        expect(page.locator("#connection")).to_have_text("Live", timeout=45_000)
        expect(message(page, "Sent while the server was down")).to_have_count(1, timeout=30_000)
        expect(message(page, "Carol after restart")).to_have_count(1)
    expect(alice.locator(".pending")).to_have_count(0)
    _, found = servers.api(webclient_server, "GET",
                           f"/api/conversations/{conversation_id}/messages/?search=server+was+down",
                           token=bob.token, expect=200)
    assert found["count"] == 1

    # Alice removes Carol: Carol is told, and her view stops updating.
    alice.get_by_role("button", name="Members").click()
    alice.get_by_role("button", name="Remove Carol Cooper").click()
    expect(alice.locator("#members-list")).not_to_contain_text("Carol Cooper")
    alice.get_by_role("button", name="Close").click()
    expect(carol_page.locator("#conversation-notice")).to_contain_text("no longer a member")
    expect(inbox_item(carol_page, "Alice Archer")).to_have_count(0)
    send(alice, "After Carol left")
    expect(message(bob_page, "After Carol left")).to_have_count(1)
    time.sleep(1)
    expect(message(carol_page, "After Carol left")).to_have_count(0)
    expect(message(carol_page, "Hi both")).to_have_count(1)  # what she saw stays, frozen
    expect(carol_page.locator("#composer")).to_be_hidden()

    # Added back, Carol's open conversation comes alive again, with what she missed.
    alice.get_by_role("button", name="Members").click()
    alice.fill("#members-search", "Carol")
    alice.get_by_role("button", name="Add Carol Cooper").click()
    expect(alice.locator("#members-list")).to_contain_text("Carol Cooper")
    alice.get_by_role("button", name="Close").click()
    expect(carol_page.locator("#conversation-notice")).to_be_hidden()
    expect(message(carol_page, "After Carol left")).to_have_count(1)
    expect(carol_page.locator("#composer")).to_be_visible()

    # What the README shows, and the accessibility check of the chat view: a picture among the messages.
    paste(alice, "#composer", "plan.png", png(240, 150, (11, 92, 173)), event="drop")
    expect(alice.locator("#upload-list .upload-done")).to_have_count(1)
    send(alice, "The plan")
    for page in (alice, bob_page):
        expect(message(page, "The plan").locator("img")).to_have_attribute("src", re.compile("^blob:"))
    alice.locator("#composer-input").fill("")
    bob_page.locator("#composer-input").press_sequentially("Se")
    expect(alice.locator("#typing")).to_have_text("Bob Baker is typing…")
    alice.evaluate("document.getElementById('status').textContent = ''")  # no passing toast in the picture
    SCREENSHOT.parent.mkdir(exist_ok=True)
    alice.screenshot(path=str(SCREENSHOT))
    assert serious_violations(alice) == []
    assert serious_violations(bob_page) == []

    # Bob leaves: the conversation goes from his inbox, and from Alice's title.
    bob_page.get_by_role("button", name="Members").click()
    bob_page.get_by_role("button", name="Leave conversation").click()
    expect(inbox_item(bob_page, "Alice Archer")).to_have_count(0)
    expect(bob_page.locator("#conversation-title")).to_have_text("No conversation open")
    expect(alice.locator("#conversation-title")).to_have_text("Carol Cooper")

    problems = alice_w.problems + bob_w.problems + carol_w.problems
    assert problems == []
    for context in contexts:
        context.close()
    assert time.monotonic() - started < 150


def test_phone_screen_keyboard_and_accessibility(webclient_server, browser):
    dave = register(webclient_server, "Dave", "Dunn")
    erin = register(webclient_server, "Erin", "Evans")
    servers.api(webclient_server, "POST", "/api/conversations/", {
        "participants": [erin.user_id], "messages": [{"message_body": "Phone check"}],
    }, token=dave.token, expect=201)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    watched = open_client(context, webclient_server, "erin")
    page = watched.page
    assert serious_violations(page) == []  # the log-in and register forms

    # Keyboard only: the first Tab reaches the email field; log in with the keyboard.
    page.keyboard.press("Tab")
    expect(page.locator("#login-email")).to_be_focused()
    page.keyboard.type(erin.email)
    page.keyboard.press("Tab")
    page.keyboard.type(erin.password)
    page.keyboard.press("Enter")
    expect(page.locator("#connection")).to_have_text("Live")

    # One pane at a time: the inbox, then the conversation with a way back.
    expect(page.locator("#inbox")).to_be_visible()
    expect(page.locator("#conversation")).to_be_hidden()
    assert serious_violations(page) == []
    inbox_item(page, "Dave Dunn").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#conversation")).to_be_visible()
    expect(page.locator("#inbox")).to_be_hidden()
    expect(message(page, "Phone check")).to_have_count(1)
    expect(page.locator("#composer-input")).to_be_focused()
    page.keyboard.type("Typed on a phone")
    page.keyboard.press("Enter")
    expect(message(page, "Typed on a phone")).to_have_count(1)
    assert serious_violations(page) == []
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"

    # An access token that no longer works: the client refreshes it, and the refresh token rotates.
    def stored_tokens():
        return json.loads(page.evaluate("sessionStorage.getItem('webclient.tokens')"))

    first_refresh = stored_tokens()["refresh"]
    page.evaluate("""() => { const t = JSON.parse(sessionStorage.getItem('webclient.tokens'));
        t.access = 'not-a-token'; sessionStorage.setItem('webclient.tokens', JSON.stringify(t)); }""")
    page.reload()
    expect(page.locator("#connection")).to_have_text("Live")
    expect(message(page, "Typed on a phone")).to_have_count(1)
    second_refresh = stored_tokens()["refresh"]
    assert second_refresh != first_refresh
    servers.api(webclient_server, "POST", "/api/token/refresh/", {"refresh": first_refresh}, expect=401)

    # Away longer than events are kept: the resume is answered cursor_expired and the client
    # reloads over REST, showing what it missed, once.
    webclient_server.stop()
    expect(page.locator("#connection")).not_to_have_text("Live")
    webclient_server.manage("shell", "-c", (
        "from chats.models import Conversation, User; from chats import services; "
        f"dave = User.objects.get(email='{dave.email}'); "
        "services.message_send(conversation=Conversation.objects.get(participants=dave), sender=dave, "
        "message_body='While you were away')"
    ))
    assert "Deleted" in webclient_server.manage("prune_events", "--days", "0")
    webclient_server.start()
    expect(page.locator("#connection")).to_have_text("Live", timeout=45_000)
    expect(message(page, "While you were away")).to_have_count(1)
    expect(message(page, "Typed on a phone")).to_have_count(1)

    page.get_by_role("button", name="Back to conversations").click()
    expect(page.locator("#inbox")).to_be_visible()
    expect(inbox_item(page, "Dave Dunn")).to_contain_text("Dave: While you were away")

    # Logging out blacklists the refresh token and forgets it.
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#login-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('webclient.tokens')") is None
    deadline = time.monotonic() + 10
    while servers.call(webclient_server, "POST", "/api/token/refresh/", {"refresh": second_refresh}).status != 401:
        assert time.monotonic() < deadline, "the refresh token still works after logging out"
        time.sleep(0.2)
    assert watched.problems == []
    context.close()


def png(width, height, color):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def paste(page, selector, name, data, event="paste"):
    """A paste (or a drop) of one file, as the browser makes it: a DataTransfer holding a File."""
    page.locator(selector).evaluate("""(node, [name, bytes, event]) => {
        const transfer = new DataTransfer();
        const data = Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0));
        transfer.items.add(new File([data], name, { type: "image/png" }));
        node.dispatchEvent(event === "paste"
            ? new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true })
            : new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [name, base64.b64encode(data).decode(), event])


def test_attachments_and_presence(webclient_server, browser):
    started = time.monotonic()
    frank = register(webclient_server, "Frank", "Fisher")
    grace = register(webclient_server, "Grace", "Green")
    mallory = register(webclient_server, "Mallory", "Moss")  # shares no conversation with them
    _, conversation = servers.api(webclient_server, "POST", "/api/conversations/", {
        "participants": [grace.user_id], "messages": [{"message_body": "Files coming"}],
    }, token=frank.token, expect=201)
    contexts = [browser.new_context(viewport={"width": 1100, "height": 720}) for _ in range(2)]
    # Grace's page counts the object URLs it holds: each must be revoked once off the page.
    contexts[1].add_init_script("""(() => {
        const create = URL.createObjectURL.bind(URL), revoke = URL.revokeObjectURL.bind(URL);
        window.liveBlobUrls = new Map();
        URL.createObjectURL = (b) => { const u = create(b); window.liveBlobUrls.set(u, b.type); return u; };
        URL.revokeObjectURL = (u) => { window.liveBlobUrls.delete(u); revoke(u); };
    })()""")
    frank_w, grace_w = (open_client(c, webclient_server, n) for c, n in zip(contexts, ("frank", "grace")))
    frank_page, grace_page = frank_w.page, grace_w.page

    # Grace waits in the conversation: Frank has never been online, so no dot; he connects: online.
    log_in(grace_w, grace)
    inbox_item(grace_page, "Frank Fisher").click()
    expect(message(grace_page, "Files coming")).to_have_count(1)
    frank_row = inbox_item(grace_page, "Frank Fisher")
    expect(frank_row.locator(".dot")).to_have_count(0)
    log_in(frank_w, frank)
    expect(frank_row.locator(".dot.online")).to_have_count(1)
    expect(frank_row).to_contain_text("Frank Fisher (online)")
    expect(grace_page.locator("#conversation-presence")).to_have_text("Online")

    # Frank attaches an image and a text file with the file picker; both upload with progress.
    picture = png(64, 48, (200, 30, 30))
    notes = b"Meeting notes\nline two <script>alert(1)</script>\n"
    inbox_item(frank_page, "Grace Green").click()
    with frank_page.expect_file_chooser() as chooser:
        frank_page.get_by_role("button", name="Attach").click()
    chooser.value.set_files([
        {"name": "red.png", "mimeType": "image/png", "buffer": picture},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": notes},
    ])
    expect(frank_page.locator("#upload-list li")).to_have_count(2)
    expect(frank_page.locator("#upload-list .upload-done")).to_have_count(2)
    # A type the server refuses: said in the list and the status region; it blocks the send until removed.
    frank_page.set_input_files("#file-input", [
        {"name": "tool.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90\x00not really"},
    ])
    expect(frank_page.locator("#upload-list .upload-error")).to_have_text(
        "Not uploaded: this type of file is not allowed")
    send(frank_page, "Here are the files")
    expect(frank_page.locator("#status")).to_have_text("Remove the files that could not be uploaded first")
    frank_page.get_by_role("button", name="Remove tool.exe").click()
    send(frank_page, "Here are the files")
    expect(frank_page.locator("#upload-list")).to_be_hidden()

    # Grace sees the thumbnail live (a blob: URL of the JWT-fetched thumbnail), opens the full image,
    # and downloads the text file: the same bytes.
    received = message(grace_page, "Here are the files")
    expect(received.locator("img")).to_have_attribute("src", re.compile("^blob:"))
    received.locator("img").evaluate("img => img.decode()")
    assert received.locator("img").evaluate("img => img.naturalWidth") == 64
    received.get_by_role("button", name=re.compile("^Open image red.png")).click()
    expect(grace_page.locator("#image-dialog")).to_be_visible()
    expect(grace_page.locator("#image-full")).to_have_attribute("src", re.compile("^blob:"))
    grace_page.locator("#image-full").evaluate("img => img.decode()")
    assert grace_page.locator("#image-full").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 48]
    grace_page.locator("#image-close").click()
    expect(grace_page.locator("#image-dialog")).to_be_hidden()
    with grace_page.expect_download() as download:
        received.get_by_role("button", name=re.compile("^Download notes.txt")).click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_bytes() == notes
    expect(frank_row).to_contain_text("Frank: Here are the files [red.png, notes.txt]")

    # Someone outside the conversation gets 404 for every attachment URL.
    _, page = servers.api(webclient_server, "GET",
                          f"/api/conversations/{conversation['conversation_id']}/messages/?search=files",
                          token=grace.token, expect=200)
    sent = [m for m in page["results"] if m["message_body"] == "Here are the files"][0]
    assert sorted(a["file_name"] for a in sent["attachments"]) == ["notes.txt", "red.png"]
    for a in sent["attachments"]:
        for url in filter(None, (a["download_url"], a["thumbnail_url"])):
            assert servers.call(webclient_server, "GET", url, token=grace.token).status == 200
            assert servers.call(webclient_server, "GET", url, token=mallory.token).status == 404

    # A message of attachments only, no text.
    # Pasted into the message box: a file too large for the server (1 MiB here) and an image.
    paste(frank_page, "#composer-input", "big.png", b"\x89PNG" + bytes(1024 * 1024 + 100))
    expect(frank_page.locator("#upload-list .upload-error")).to_have_text("Not uploaded: the file is too large")
    frank_page.get_by_role("button", name="Remove big.png").click()
    # Its first upload fails as if offline: "Retry" uploads it again.
    frank_page.route("**/api/attachments/", lambda route: route.abort())
    paste(frank_page, "#composer-input", "blue.png", png(40, 40, (20, 40, 200)))
    expect(frank_page.locator("#upload-list .upload-error")).to_have_text("Not uploaded: the server cannot be reached")
    frank_page.unroute("**/api/attachments/")
    frank_page.get_by_role("button", name="Retry blue.png").click()
    expect(frank_page.locator("#upload-list .upload-done")).to_have_count(1)
    # Its send fails as if offline: it waits in the outbox (the file named), then goes out once.

    def offline_sends(route):
        if route.request.method == "POST":
            route.abort()
        else:
            route.continue_()

    frank_page.route(re.compile(r"/api/conversations/[^/]+/messages/$"), offline_sends)
    frank_page.press("#composer-input", "Enter")
    pending = frank_page.locator("#message-list .message").filter(has=frank_page.locator(".pending"))
    expect(pending).to_contain_text("blue.png")
    frank_page.unroute(re.compile(r"/api/conversations/[^/]+/messages/$"))
    expect(frank_page.locator("#message-list .pending")).to_have_count(0)
    expect(grace_page.locator("#message-list img")).to_have_count(2)
    expect(grace_page.locator("#message-list img").last).to_have_attribute("src", re.compile("^blob:"))
    expect(frank_page.locator("#message-list img")).to_have_count(2)
    grace_page.locator("#message-list .message").last.get_by_role("button", name=re.compile("^Reply")).click()
    expect(grace_page.locator("#composer-context")).to_contain_text("Replying to Frank Fisher: [blue.png]")
    grace_page.press("#composer-input", "Escape")
    assert serious_violations(grace_page) == []

    # Frank hides his presence: his dot goes from Grace's page; shown again, it comes back.
    frank_page.get_by_role("button", name="Settings").click()
    toggle = frank_page.get_by_label("Show when I'm online")
    expect(toggle).to_be_checked()
    assert serious_violations(frank_page) == []
    toggle.uncheck()
    expect(frank_row.locator(".dot")).to_have_count(0)
    expect(grace_page.locator("#conversation-presence")).to_have_text("")
    _, me = servers.api(webclient_server, "GET", "/api/users/me/", token=frank.token, expect=200)
    assert me["presence_visible"] is False
    toggle.check()
    expect(frank_row.locator(".dot.online")).to_have_count(1)
    frank_page.get_by_role("button", name="Close").click()

    # Frank closes his page: after the grace period (1 s here) Grace sees him offline, last seen now.
    frank_page.close()
    expect(frank_row.locator(".dot.offline")).to_have_count(1)
    expect(frank_row).to_contain_text("Frank Fisher (offline)")
    expect(grace_page.locator("#conversation-presence")).to_have_text("last seen just now")

    # Grace logs out: the thumbnails leave the page and their object URLs are revoked (a download's
    # goes 10 s after it started).
    images = "() => [...window.liveBlobUrls.values()].filter((type) => type.startsWith('image/')).length"
    assert grace_page.evaluate(images) == 2
    grace_page.get_by_role("button", name="Log out").click()
    expect(grace_page.locator("#login-form")).to_be_visible()
    expect(grace_page.locator("#message-list li")).to_have_count(0)
    grace_page.wait_for_function(f"() => ({images})() === 0")

    assert frank_w.problems + grace_w.problems == []
    for context in contexts:
        context.close()
    assert time.monotonic() - started < 60


def test_group_title_mentions_search_mute_and_archive(webclient_server, browser):
    """
    A titled group shows its title; a message that mentions you is marked in the inbox (@ badge)
    and in the timeline; search finds messages and opens their conversation; mute and archive are
    yours alone, follow you to your other device, and a new message brings an archived conversation back.
    """
    hana = register(webclient_server, "Hana", "Hill")
    ivan = register(webclient_server, "Ivan", "Ivers")
    jo = register(webclient_server, "Jo", "Jones")
    _, group = servers.api(webclient_server, "POST", "/api/conversations/", {
        "participants": [ivan.user_id, jo.user_id], "messages": [{"message_body": "Kickoff"}],
    }, token=hana.token, expect=201)
    servers.api(webclient_server, "PATCH", f"/api/conversations/{group['conversation_id']}/",
                {"title": "Lighthouse crew"}, token=hana.token, expect=200)
    contexts = [browser.new_context(viewport={"width": 1100, "height": 720}) for _ in range(2)]
    tab, other_tab = (open_client(c, webclient_server, n) for c, n in zip(contexts, ("hana", "hana's phone")))
    page = tab.page
    log_in(tab, hana)
    row = inbox_item(page, "Lighthouse crew")
    expect(row).to_have_count(1)

    # Ivan mentions Hana: the row shows an @ badge; the message is marked as mentioning her.
    servers.api(webclient_server, "POST", f"/api/conversations/{group['conversation_id']}/messages/",
                {"message_body": "@Hana the beacon needs oil", "mentions": [hana.user_id]},
                token=ivan.token, expect=201)
    expect(row.locator(".badge.mention")).to_have_text("@1 mention of you")
    row.click()
    expect(page.locator("#conversation-title")).to_have_text("Lighthouse crew")
    marked = message(page, "@Hana the beacon needs oil")
    expect(marked).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(marked.locator(".mention-note")).to_have_text("mentions you")
    expect(message(page, "Kickoff")).not_to_have_class(re.compile(r"\bmentions-me\b"))
    expect(row.locator(".badge")).to_have_count(0)  # read now

    # Search: the matching message, in its conversation; a click opens it.
    page.fill("#search-input", "beacon")
    page.press("#search-input", "Enter")
    results = page.locator("#search-results button")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Ivan Ivers: @Hana the beacon needs oil")
    expect(results.first).to_contain_text("in Lighthouse crew")
    page.fill("#search-input", "zeppelin")
    page.press("#search-input", "Enter")
    expect(page.locator("#search-results")).to_contain_text("No message matches.")
    page.fill("#search-input", "beacon")
    page.press("#search-input", "Enter")
    results.first.click()
    expect(page.locator("#conversation-title")).to_have_text("Lighthouse crew")

    # Mute: Hana's own setting (the server says so), shown on the row, on her other device too.
    log_in(other_tab, hana)
    page.get_by_role("button", name="Mute").click()
    expect(page.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
    _, mine = servers.api(webclient_server, "GET", f"/api/conversations/{group['conversation_id']}/membership/",
                          token=hana.token, expect=200)
    assert mine["muted"] is True
    _, ivans = servers.api(webclient_server, "GET", f"/api/conversations/{group['conversation_id']}/membership/",
                           token=ivan.token, expect=200)
    assert ivans["muted"] is False
    expect(row.locator(".conv-flags")).to_have_text("(muted)")
    expect(inbox_item(other_tab.page, "Lighthouse crew").locator(".conv-flags")).to_have_text("(muted)")
    page.get_by_role("button", name="Unmute").click()
    expect(row.locator(".conv-flags")).to_have_count(0)

    # Archive: gone from the inbox (and from the other device's), listed under Archived.
    page.get_by_role("button", name="Archive", exact=True).click()
    expect(row).to_have_count(0)
    expect(inbox_item(other_tab.page, "Lighthouse crew")).to_have_count(0)
    page.locator("#archived-toggle").click()
    expect(page.locator("#archived-title")).to_be_visible()
    expect(inbox_item(page, "Lighthouse crew")).to_have_count(1)
    page.locator("#archived-toggle").click()
    expect(inbox_item(page, "Lighthouse crew")).to_have_count(0)

    # A new message from someone else unarchives it (it is not muted): back on both devices.
    servers.api(webclient_server, "POST", f"/api/conversations/{group['conversation_id']}/messages/",
                {"message_body": "Oil delivered"}, token=jo.token, expect=201)
    expect(inbox_item(page, "Lighthouse crew")).to_have_count(1)
    expect(inbox_item(other_tab.page, "Lighthouse crew")).to_have_count(1)
    _, mine = servers.api(webclient_server, "GET", f"/api/conversations/{group['conversation_id']}/membership/",
                          token=hana.token, expect=200)
    assert mine["archived"] is False
    assert serious_violations(page) == []
    assert tab.problems == [] and other_tab.problems == []
    for context in contexts:
        context.close()
