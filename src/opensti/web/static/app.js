// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", function () {
  // Copy buttons: reveal them, and copy the named read-only field on click.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
      } else {
        field.select();
        document.execCommand("copy");
        done();
      }
    });
  });

  // Slow forms (a certificate request takes a second or more): once sent, the button
  // is disabled and says what is going on, so it is neither clicked twice nor
  // mistaken for a dead one.
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var button = event.submitter || form.querySelector("button[type=submit]");
      if (!button) { return; }
      // After this turn: the browser has taken the form's data already.
      setTimeout(function () {
        button.disabled = true;
        button.setAttribute("aria-busy", "true");
        button.textContent = form.dataset.busy;
      }, 0);
    });
  });

  // Back to a page kept in the browser's cache: its buttons work again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("button[aria-busy=true]").forEach(function (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
  });

  // The EAB fields show while the chosen CA requires External Account Binding.
  var select = document.querySelector("select[data-eab-select]");
  var eab = document.querySelector("[data-eab-fields]");
  if (select && eab) {
    var update = function () {
      var option = select.options[select.selectedIndex];
      // Shown too when the CA refused the account for want of EAB.
      var refused = eab.querySelector("[aria-invalid=true]");
      eab.hidden = !(option && option.dataset.eab) && !refused;
    };
    select.addEventListener("change", update);
    update();
  }

  // A form's error summary in view even where autofocus did not scroll.
  var error = document.getElementById("form-error");
  if (error) { error.scrollIntoView({ block: "center" }); }
});
