// Sorting and filtering for the report tables. Plain DOM code, no dependencies: works offline and from file://.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    return cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
  }

  function compareValues(a, b, type) {
    if (type === "number") {
      var x = parseFloat(a), y = parseFloat(b);
      if (isNaN(x)) x = -Infinity;
      if (isNaN(y)) y = -Infinity;
      return x === y ? 0 : (x < y ? -1 : 1);
    }
    return a.localeCompare(b, undefined, { sensitivity: "base", numeric: true });
  }

  function makeSortable(table) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (header, index) {
      var button = header.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var ascending = header.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (other) {
          if (other.hasAttribute("aria-sort")) other.setAttribute("aria-sort", "none");
        });
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var type = header.getAttribute("data-sort") || "text";
        rows.sort(function (a, b) {
          var order = compareValues(cellValue(a, index), cellValue(b, index), type);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  function makeFilterable(table) {
    var text = document.getElementById("filter");
    var verdict = document.getElementById("verdict-filter");
    var shown = document.getElementById("shown-count");
    var noMatch = document.getElementById("no-match");
    if (!text || !verdict) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);

    function apply() {
      var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
      var wanted = verdict.value;
      var visible = 0;
      rows.forEach(function (row) {
        var rowVerdict = row.getAttribute("data-verdict") || "";
        var haystack = (row.textContent + " " + rowVerdict).toLowerCase();
        var match = (!wanted || rowVerdict === wanted) &&
          words.every(function (word) { return haystack.indexOf(word) !== -1; });
        row.hidden = !match;
        if (match) visible += 1;
      });
      if (shown) shown.textContent = visible + " of " + rows.length + " shown";
      if (noMatch) noMatch.hidden = visible !== 0;
    }

    text.addEventListener("input", apply);
    verdict.addEventListener("change", apply);
    Array.prototype.forEach.call(document.querySelectorAll("[data-verdict-filter]"), function (button) {
      button.addEventListener("click", function () {
        var value = button.getAttribute("data-verdict-filter");
        verdict.value = verdict.value === value ? "" : value;
        apply();
      });
    });
    apply(); // the browser may have restored form values (back navigation)
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
    Array.prototype.forEach.call(document.querySelectorAll("table.filterable"), makeFilterable);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
