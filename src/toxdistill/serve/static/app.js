// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

  // The API key, when the server needs one: asked once, kept in this tab's sessionStorage only (never a
  // cookie or localStorage), and put into each form's key field. The server refuses a wrong key with the
  // page again and a #key-rejected marker, so a stale key is dropped and asked for anew.
  var KEY = "toxdistill-api-key";
  var keyInputs = Array.prototype.slice.call(document.querySelectorAll('input[name="api_key"]'));
  function storage() {
    try { return window.sessionStorage; } catch (e) { return null; }  // storage can be switched off
  }
  if (keyInputs.length && storage()) {
    var store = storage();
    if (document.getElementById("key-rejected")) store.removeItem(KEY);
    var stored = store.getItem(KEY);
    var status = document.getElementById("key-status");
    if (stored) {
      keyInputs.forEach(function (input) {
        input.value = stored;
        input.closest(".key-row").hidden = true;
      });
      if (status) status.hidden = false;
    }
    keyInputs.forEach(function (input) {
      input.addEventListener("input", function () {
        keyInputs.forEach(function (other) { if (other !== input) other.value = input.value; });
      });
      input.form.addEventListener("submit", function () {
        if (input.value.trim()) store.setItem(KEY, input.value.trim());
      });
    });
    var forget = document.getElementById("forget-key");
    if (forget) {
      forget.addEventListener("click", function () {
        store.removeItem(KEY);
        keyInputs.forEach(function (input) {
          input.value = "";
          input.closest(".key-row").hidden = false;
        });
        if (status) status.hidden = true;
        keyInputs[0].focus();
      });
    }
  }

  var text = document.getElementById("text");
  var count = document.getElementById("text-count");
  function updateCount() {
    if (!text || !count) return;
    var words = text.value.trim() ? text.value.trim().split(/\s+/).length : 0;
    count.textContent = text.value.length + " characters, " + words + " words";
  }
  if (text) {
    text.addEventListener("input", updateCount);
    updateCount();
    // Ctrl/Cmd+Enter submits, as in most comment boxes.
    text.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && text.form) {
        e.preventDefault();
        text.form.requestSubmit();
      }
    });
  }

  // A second click while the model runs would only queue the same work again.
  var form = document.getElementById("classify-form");
  if (form) {
    form.addEventListener("submit", function () {
      var button = document.getElementById("submit");
      if (button) {
        button.disabled = true;
        button.textContent = "Classifying…";
      }
    });
    // Coming back through the history cache would otherwise show a button stuck on "Classifying…".
    window.addEventListener("pageshow", function () {
      var button = document.getElementById("submit");
      if (button) {
        button.disabled = false;
        button.textContent = "Classify";
      }
    });
  }

  // Say "too large" before uploading megabytes the server will refuse; the server still checks.
  var batch = document.getElementById("batch-form");
  if (batch) {
    batch.addEventListener("submit", function (e) {
      var input = document.getElementById("file");
      var limit = parseInt(batch.getAttribute("data-max-bytes"), 10);
      if (input && input.files.length && limit && input.files[0].size > limit) {
        e.preventDefault();
        var msg = document.getElementById("batch-error");
        if (!msg) {
          msg = document.createElement("p");
          msg.id = "batch-error";
          msg.className = "alert alert-error";
          msg.setAttribute("role", "alert");
          batch.appendChild(msg);
        }
        msg.textContent = "The file is " + (input.files[0].size / 1048576).toFixed(1) +
          " MB; the limit is " + (limit / 1048576) + " MB.";
      }
    });
  }
})();
