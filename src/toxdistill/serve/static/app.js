// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";

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
